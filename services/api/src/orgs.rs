//! `/api/v2/orgs/{org_id}/...`: where every resource lives, as in the reference product's REST
//! API. Each area (API keys, inventory, labeling; rulesets... later) is a module whose
//! [`ApiRouter`] is merged in [`routes`].

use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::HttpError;
use crate::{ApiRouter, api_keys, inventory, labeling};

/// The only organisation until Bulkhead is multi-tenant.
const DEFAULT_ORG: u64 = 1;

/// The `{org_id}` of an org-scoped path; handlers take it as `Path<OrgScope>` and list it in
/// their `params(...)`.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct OrgScope {
    /// The organisation; `1`.
    org_id: u64,
}

impl OrgScope {
    /// The `href` of a resource: its path below `/api/v2`, as the reference product spells it.
    pub(crate) fn href(self, collection: &str, id: &str) -> String {
        format!("/orgs/{}/{collection}/{id}", self.org_id)
    }
}

/// Every org-scoped area, with paths relative to `/orgs/{org_id}`.
pub(crate) fn routes() -> ApiRouter {
    ApiRouter::default()
        .merge(api_keys::routes())
        .merge(inventory::routes())
        .merge(labeling::routes())
        .layer(middleware::from_fn(require_known_org))
}

async fn require_known_org(Path(scope): Path<OrgScope>, request: Request, next: Next) -> Response {
    if scope.org_id == DEFAULT_ORG {
        next.run(request).await
    } else {
        HttpError::new(
            StatusCode::NOT_FOUND,
            format!("organization {} does not exist", scope.org_id),
        )
        .into_response()
    }
}
