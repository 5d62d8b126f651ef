//! The route tree, its layers, and the OpenAPI document generated from the same registrations.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::{Json, Router, middleware};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, TraceLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa_axum::routes;

use crate::error::{self, ErrorBody};
use crate::{AppState, auth, health, log, metrics, orgs};

/// Routes and their OpenAPI paths, registered together so that neither can drift. Areas build
/// one with `ApiRouter::default()` (not `new()`, which would bring utoipa-axum's own title).
pub(crate) type ApiRouter = utoipa_axum::router::OpenApiRouter<AppState>;

/// Request bodies larger than this are refused with 413.
pub(crate) const MAX_REQUEST_BODY_BYTES: usize = 1 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bulkhead API",
        description = "Micro-segmentation control plane. Authenticate with an API key: \
                       `Authorization: Bearer <key>`, or HTTP Basic with the key as password. \
                       Every error has the body `{\"error\": {\"code\", \"message\"}}`."
    ),
    security(("bearer" = []), ("basic" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Service health"),
        (name = "meta", description = "This API itself"),
        (name = "api_keys", description = "API keys"),
        (name = "labeling", description = "Label dimensions, labels, label groups, container workload profiles \
            (with their template and pairing keys), label maps"),
        (name = "log", description = "The event log: status, events, membership (read-only for events)"),
    )
)]
struct ApiDoc;

/// The documented route tree. `guard` wraps its authenticated part; layers add no paths, so
/// [`crate::openapi`] passes it through unchanged.
pub(crate) fn tree(guard: impl FnOnce(ApiRouter) -> ApiRouter) -> ApiRouter {
    let public = ApiRouter::default()
        .routes(routes!(health::get_health))
        .routes(routes!(get_openapi));
    // The fallback sits behind the guard so that an unknown path tells nothing without a key.
    let authenticated = guard(
        ApiRouter::default()
            .nest("/orgs/{org_id}", orgs::routes())
            .nest("/log", log::routes())
            .fallback(no_route),
    );
    ApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v2", public.merge(authenticated))
}

/// The whole service, ready to serve.
pub(crate) fn app(state: AppState) -> Router {
    let guard = |area: ApiRouter| {
        area.layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
    };
    with_outer_layers(Router::from(tree(guard)).with_state(state))
}

/// What every request passes through, outermost last.
pub(crate) fn with_outer_layers(router: Router) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn(error::normalize))
        .layer(middleware::from_fn(metrics::count_requests))
        // Spans at info, so that the default log filter keeps them (and exports them to
        // OpenTelemetry); their per-request events stay at debug.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                // A 503 from /health while services start is an answer, not a failure of ours.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
}

/// `error::normalize` turns this into the error shape, like axum's own 404.
async fn no_route() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// Adds what no single route states: the security schemes, a 401 answer on every operation
/// that needs a key, and the error shape as every operation's default answer.
pub(crate) fn complete(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "Any user name (e.g. the key id), the API key as password",
                ))
                .build(),
        ),
    );
    let error = |description: &str| -> RefOr<Response> {
        Response::builder()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build()
            .into()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            // `security(())` on a route is an empty requirement: no key needed.
            let public = operation
                .security
                .as_ref()
                .is_some_and(|s| s.contains(&SecurityRequirement::default()));
            if !public {
                operation
                    .responses
                    .responses
                    .insert("401".into(), error("No valid API key"));
            }
            operation
                .responses
                .responses
                .insert("default".into(), error("Any other error"));
        }
    }
}

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(crate::openapi);

/// This OpenAPI 3 document
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = OK, description = "The OpenAPI 3 document of this API", content_type = "application/json"))
)]
async fn get_openapi() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&DOCUMENT)
}
