//! Errors: [`ApiError`] for starting and running the service, [`HttpError`] and the one JSON
//! shape of every error response.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::keys::KeyStoreError;

/// Why the api could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    #[error("cannot subscribe to service heartbeats: {0}")]
    Bus(#[from] bulkhead_runtime::bus::BusError),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
struct ErrorDetail {
    /// Stable and machine-readable, in snake_case, e.g. `unauthorized`, `not_found`.
    #[schema(example = "not_found")]
    code: String,
    /// For humans; may change between versions.
    message: String,
}

/// An error answer of a handler or middleware.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    message: String,
}

/// Marks a response whose body the handler chose on purpose, so that [`normalize`] leaves it
/// alone: every [`HttpError`], and `/health`'s 503, which carries the health report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shaped;

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

/// The error code of a status: its reason phrase in snake_case (`payload_too_large`), so that
/// errors made by axum and tower-http get the same codes as ours.
fn code_for(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => reason
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect(),
        None => format!("http_{}", status.as_u16()),
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: code_for(self.status),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(Shaped);
        response
    }
}

/// Error bodies of axum's rejections and tower-http are one line of text; longer ones are not
/// worth repeating in a message.
const MAX_REPEATED_BODY: usize = 4096;

/// Rewrites every error response not made by [`HttpError`] into the error shape: axum's
/// rejections (bad JSON, 405, unknown route) and tower-http's 413 come as plain text or empty
/// bodies. Their text becomes the message; headers such as `Allow` are kept.
pub(crate) async fn normalize(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Shaped>().is_some()
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REPEATED_BODY)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = text.unwrap_or_else(|| format!("{reason}: {method} {path}"));
    let mut shaped = HttpError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            shaped.headers_mut().append(name, value.clone());
        }
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_reason_phrases() {
        assert_eq!(code_for(StatusCode::NOT_FOUND), "not_found");
        assert_eq!(code_for(StatusCode::PAYLOAD_TOO_LARGE), "payload_too_large");
        assert_eq!(code_for(StatusCode::IM_A_TEAPOT), "i_m_a_teapot");
        assert_eq!(code_for(StatusCode::from_u16(599).unwrap()), "http_599");
    }
}
