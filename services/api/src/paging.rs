//! Paging of lists, as every area pages them: `max_results` and `offset` in the query, a page
//! of JSON out, with the size of the whole list in `X-Total-Count`.
//!
//! A handler takes the page as its own extractor, next to its filters:
//! `Query(page): Query<PageQuery>, Query(filters): Query<Filters>` (serde's `flatten` cannot
//! carry the numbers of a query string into one struct), and lists both in `params(...)`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::error::HttpError;

/// Entries per page unless `max_results` says otherwise.
pub(crate) const DEFAULT_MAX_RESULTS: u32 = 500;
const TOTAL_HEADER: &str = "x-total-count";

/// Which page of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// At most this many entries (default 500, at most 1000).
    max_results: Option<u32>,
    /// Skip this many entries first (default 0).
    offset: Option<u32>,
}

/// A checked page: skip `offset` entries, then take at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) offset: u32,
    pub(crate) limit: u32,
}

impl PageQuery {
    /// The page asked for; `max_results` beyond `most` (what the answering service takes in
    /// one query) is a 400.
    pub(crate) fn window(&self, most: u32) -> Result<Window, HttpError> {
        let limit = self.max_results.unwrap_or(DEFAULT_MAX_RESULTS.min(most));
        if limit == 0 || limit > most {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("max_results must be between 1 and {most}"),
            ));
        }
        Ok(Window {
            offset: self.offset.unwrap_or(0),
            limit,
        })
    }
}

/// A page of a list: the total on all pages, and the entries.
pub(crate) struct Listing(pub(crate) u64, pub(crate) Vec<Value>);

impl IntoResponse for Listing {
    fn into_response(self) -> Response {
        ([(TOTAL_HEADER, self.0.to_string())], Json(self.1)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(max_results: Option<u32>, offset: Option<u32>) -> PageQuery {
        PageQuery {
            max_results,
            offset,
        }
    }

    #[test]
    fn windows_default_and_refuse_what_the_service_would() {
        assert_eq!(
            page(None, None).window(1000).unwrap(),
            Window {
                offset: 0,
                limit: DEFAULT_MAX_RESULTS
            }
        );
        assert_eq!(
            page(Some(7), Some(3)).window(1000).unwrap(),
            Window {
                offset: 3,
                limit: 7
            }
        );
        assert_eq!(page(None, None).window(100).unwrap().limit, 100);
        assert!(page(Some(0), None).window(1000).is_err());
        assert!(page(Some(1001), None).window(1000).is_err());
    }
}
