//! The `api` service: Bulkhead's REST API under `/api/v2/`, its API keys, and the health of
//! every service as their heartbeats tell it.
//!
//! ```text
//!  request -> TraceLayer -> count_requests -> error::normalize -> body limit -> routes
//!
//!  /api/v2/health, /api/v2/openapi.json                       public
//!  /api/v2/**            -> auth::require_api_key -+-> /orgs/{org_id}/** -> require_known_org -> areas
//!                                                  +-> anything else: 404
//!
//!  bus: service heartbeats -> health::watch -> HealthBoard -> GET /api/v2/health
//!       Health("api")      -> publish_heartbeats -> bus      (the api is a service too)
//! ```
//!
//! Every error response, ours or axum's, has one body: `{"error": {"code", "message"}}`
//! (`error::normalize` rewrites the ones we did not make). The OpenAPI document comes from the
//! same registrations as the routes (utoipa-axum), so it cannot drift.
//!
//! # Adding an area
//!
//! Resources live under `/api/v2/orgs/{org_id}/...` and carry `href` (their path below
//! `/api/v2`, from `OrgScope::href`) and `name`, as in the reference product's REST API. For a
//! new area, e.g. workloads:
//!
//! 1. write `src/workloads.rs` with `#[utoipa::path(..., path = "/workloads", params(OrgScope))]`
//!    handlers (paths relative to `/orgs/{org_id}`) and
//!    `pub(crate) fn routes() -> ApiRouter { ApiRouter::default().routes(routes!(list, create)) }`;
//! 2. merge it in `orgs::routes()`: `.merge(workloads::routes())`.
//!
//! It is then authenticated, org-checked, error-shaped and documented; handlers return
//! `Result<_, HttpError>`, and take the caller's key as `Extension<auth::Caller>`.
//! Lists take their page as `Query<paging::PageQuery>` and answer a `paging::Listing`, which
//! carries the total in `X-Total-Count`.

mod api_keys;
mod auth;
mod error;
mod health;
mod inventory;
mod keys;
mod labeling;
mod log;
mod metrics;
mod orgs;
mod paging;
mod routes;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bulkhead_runtime::bus::{BusError, TypedBus, TypedSubscription};
use bulkhead_runtime::health::{HEARTBEAT_INTERVAL, Health};
use bulkhead_schema::messages::health::ServiceHeartbeat;
use bulkhead_schema::{Subject, WireMessage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use keys::KeyStoreError;
use routes::ApiRouter;

pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Where the API keys are kept; `admin.key` is written here on the first start.
    pub data_dir: PathBuf,
    /// Services `/api/v2/health` reports even when never heard from.
    pub expected_services: Vec<String>,
}

/// What handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    keys: Arc<keys::KeyStore>,
    board: Arc<Mutex<health::HealthBoard>>,
    /// How handlers reach the services that own the data.
    bus: TypedBus,
}

impl AppState {
    /// Asks the service that owns the data over the bus; one that cannot be reached is a 503,
    /// one that answers what this build cannot read a 502.
    pub(crate) async fn ask<Q: WireMessage, R: WireMessage>(
        &self,
        service: &str,
        timeout: std::time::Duration,
        subject: &Subject,
        request: &Q,
    ) -> Result<R, error::HttpError> {
        use axum::http::StatusCode;
        match self.bus.request::<Q, R>(subject, request, timeout).await {
            Ok(reply) => Ok(reply.message),
            Err(error @ (BusError::NoResponders(_) | BusError::Timeout { .. })) => {
                Err(error::HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the {service} is unreachable: {error}"),
                ))
            }
            Err(error) => Err(error::HttpError::new(
                StatusCode::BAD_GATEWAY,
                format!("the {service} answered badly: {error}"),
            )),
        }
    }

    fn board(&self) -> MutexGuard<'_, health::HealthBoard> {
        // Heartbeats keep rewriting the board, so one a panic left mid-update is still usable.
        self.board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The api with its port bound and keys loaded, not serving yet.
pub struct BoundApi {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    heartbeats: TypedSubscription<ServiceHeartbeat>,
    bus: TypedBus,
    health: Health,
    new_admin_key: Option<String>,
}

/// Loads (or on the first start creates) the API keys, subscribes to heartbeats and binds the
/// port, so that the caller can print where it listens before serving.
pub async fn bind(config: ApiConfig, bus: TypedBus) -> Result<BoundApi, ApiError> {
    let (keys, new_admin_key) = keys::KeyStore::open(&config.data_dir)?;
    // Subscribed before anything is served, so that no heartbeat is missed.
    let heartbeats = bus
        .subscribe::<ServiceHeartbeat>(&Subject::service_heartbeats())
        .await?;
    let bind_error = |source| ApiError::Bind {
        addr: config.listen,
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let instance = hex::encode(rand::random::<[u8; 4]>());
    Ok(BoundApi {
        listener,
        local_addr,
        state: AppState {
            keys: Arc::new(keys),
            board: Arc::new(Mutex::new(health::HealthBoard::new(
                config.expected_services,
                Instant::now(),
            ))),
            bus: bus.clone(),
        },
        heartbeats,
        bus,
        health: Health::new("api", &instance),
        new_admin_key,
    })
}

impl BoundApi {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The api's own health, for the process's `/readyz`.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Some(plaintext) only on the very first start, when the admin key was just created.
    pub fn new_admin_key(&self) -> Option<&str> {
        self.new_admin_key.as_deref()
    }

    /// Serves until `shutdown`, then lets requests in flight finish and says `Stopping` on
    /// the bus.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ApiError> {
        // A child, so that a server failing on its own also stops the heartbeat tasks.
        let stop = shutdown.child_token();
        let router = routes::app(self.state.clone());
        self.health.ready();
        tracing::info!(addr = %self.local_addr, "api listening");
        let server = async {
            let served = axum::serve(self.listener, router)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .await;
            stop.cancel();
            served
        };
        let (served, (), ()) = tokio::join!(
            server,
            self.health
                .publish_heartbeats(self.bus, HEARTBEAT_INTERVAL, stop.clone()),
            health::watch(self.heartbeats, self.state, stop.clone()),
        );
        served.map_err(ApiError::Serve)
    }
}

/// The OpenAPI document of the API, as served at `/api/v2/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes::tree(|area| area).into_openapi();
    routes::complete(&mut doc);
    doc
}
