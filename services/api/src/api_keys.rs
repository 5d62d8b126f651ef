//! The API keys area, under `/orgs/{org_id}`.

use axum::Json;
use axum::extract::{Extension, Path};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::ApiRouter;
use crate::auth::Caller;
use crate::orgs::OrgScope;

/// A reference to an API key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyRef {
    #[schema(example = "/orgs/1/api_keys/3f2a9c0d1e4b5a68")]
    href: String,
    #[schema(example = "admin")]
    name: String,
}

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::default().routes(routes!(whoami))
}

/// The API key of this request
#[utoipa::path(
    get,
    path = "/whoami",
    tag = "api_keys",
    params(OrgScope),
    responses((status = OK, description = "The key the request authenticated with", body = ApiKeyRef))
)]
async fn whoami(
    Path(scope): Path<OrgScope>,
    Extension(Caller(key)): Extension<Caller>,
) -> Json<ApiKeyRef> {
    Json(ApiKeyRef {
        href: scope.href("api_keys", &key.id),
        name: key.name,
    })
}
