//! `bulkhead serve <service>`: one service against NATS, configured from a TOML file,
//! `BULKHEAD_*` variables and flags (in rising precedence).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bulkhead_runtime::bus::{NatsBus, NatsOptions, TypedBus};
use bulkhead_runtime::config::{self, Flags};
use bulkhead_runtime::{shutdown, telemetry};
use serde::{Deserialize, Serialize};

use crate::supervisor::Supervisor;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub service: Service,
    /// TOML config file (keys as in the `BULKHEAD_*` variables: `[nats] url = ...`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// NATS server URL(s), comma separated [default: nats://127.0.0.1:4222].
    #[arg(long, global = true)]
    pub nats: Option<String>,
    /// NATS credentials file (.creds).
    #[arg(long, global = true)]
    pub nats_creds: Option<PathBuf>,
    /// Address of /metrics, /healthz and /readyz [default: 0.0.0.0:9464].
    #[arg(long, global = true)]
    pub admin_listen: Option<SocketAddr>,
    /// Instance name, unique among the service's replicas [default: the host name].
    #[arg(long, global = true)]
    pub instance: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Service {
    /// The REST API.
    Api {
        /// Address of the REST API [default: 0.0.0.0:8443].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the API keeps its keys [default: /var/lib/bulkhead].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// One replica of the event log.
    Eventlog {
        /// This replica's id, unique in the cluster [default: 1].
        #[arg(long)]
        node_id: Option<u64>,
        /// Where the replica keeps its log [default: /var/lib/bulkhead/eventlog].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address of the Raft listener, between replicas only [default: 0.0.0.0:7000].
        #[arg(long)]
        raft_listen: Option<SocketAddr>,
        /// host:port the other replicas reach this one at [default: the Raft listener's].
        #[arg(long)]
        advertise: Option<String>,
        /// The initial members, for --init: ID=HOST:PORT,...
        #[arg(long)]
        peers: Option<String>,
        /// Create the cluster from --peers, unless this replica already belongs to one.
        #[arg(long)]
        init: bool,
    },
    /// The inventory: clusters, nodes, pods, workloads, services (a projection of the log).
    Inventory {
        /// Where inventory keeps its checkpoint [default: /var/lib/bulkhead/inventory].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A cluster is online while its last heartbeat is at most this old [default: 60].
        #[arg(long)]
        online_period_secs: Option<u64>,
    },
    /// Labeling: labels, profiles, label maps and every entity's effective labels (a
    /// projection of the log).
    Labeling {
        /// Where labeling keeps its checkpoint [default: /var/lib/bulkhead/labeling].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The cluster watcher: reports a Kubernetes cluster's objects to inventory.
    Clusterlink {
        #[command(flatten)]
        args: bulkhead_clusterlink::ClusterlinkArgs,
    },
}

/// Everything `serve` can be configured with, whichever service it runs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct ServeConfig {
    nats: NatsOptions,
    admin_listen: SocketAddr,
    instance: String,
    api: ApiSection,
    eventlog: bulkhead_eventlog::EventlogConfig,
    clusterlink: bulkhead_clusterlink::ClusterlinkConfig,
    inventory: bulkhead_inventory::InventoryConfig,
    labeling: bulkhead_labeling::LabelingConfig,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct ApiSection {
    listen: SocketAddr,
    data_dir: PathBuf,
    /// Services `GET /api/v2/health` expects to hear from.
    expected_services: Vec<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            nats: NatsOptions::default(),
            admin_listen: ([0, 0, 0, 0], 9464).into(),
            instance: std::env::var("HOSTNAME")
                .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string()),
            api: ApiSection::default(),
            eventlog: bulkhead_eventlog::EventlogConfig::default(),
            clusterlink: bulkhead_clusterlink::ClusterlinkConfig::default(),
            inventory: bulkhead_inventory::InventoryConfig::default(),
            labeling: bulkhead_labeling::LabelingConfig::default(),
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: ([0, 0, 0, 0], 8443).into(),
            data_dir: "/var/lib/bulkhead".into(),
            expected_services: vec!["api".into()],
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut flags = Flags::default()
        .set("nats.url", args.nats)
        .set("nats.credentials_file", args.nats_creds)
        .set("admin_listen", args.admin_listen)
        .set("instance", args.instance);
    let service_name = match &args.service {
        Service::Api { listen, data_dir } => {
            flags = flags
                .set("api.listen", *listen)
                .set("api.data_dir", data_dir.clone());
            "api"
        }
        Service::Eventlog {
            node_id,
            data_dir,
            raft_listen,
            advertise,
            peers,
            init,
        } => {
            flags = flags
                .set("eventlog.node_id", *node_id)
                .set("eventlog.data_dir", data_dir.clone())
                .set("eventlog.raft_listen", *raft_listen)
                .set("eventlog.advertise", advertise.clone())
                .set("eventlog.peers", peers.clone())
                .set("eventlog.init", init.then_some(true));
            "eventlog"
        }
        Service::Inventory {
            data_dir,
            online_period_secs,
        } => {
            flags = flags
                .set("inventory.data_dir", data_dir.clone())
                .set("inventory.online_period_secs", *online_period_secs);
            "inventory"
        }
        Service::Labeling { data_dir } => {
            flags = flags.set("labeling.data_dir", data_dir.clone());
            "labeling"
        }
        Service::Clusterlink { args } => {
            flags = args.clone().flags(flags, "clusterlink");
            "clusterlink"
        }
    };
    let mut config: ServeConfig = config::load(args.config.as_deref(), &flags)?;
    let _telemetry = telemetry::init(service_name)?;
    config.nats.client_name = format!("bulkhead-{service_name}-{}", config.instance);
    let bus = TypedBus::new(Arc::new(NatsBus::connect(&config.nats).await?));
    let mut supervisor = Supervisor::new(shutdown::on_signal());

    match args.service {
        Service::Api { .. } => {
            let api = bulkhead_api::bind(
                bulkhead_api::ApiConfig {
                    listen: config.api.listen,
                    data_dir: config.api.data_dir.clone(),
                    expected_services: config.api.expected_services.clone(),
                },
                bus,
            )
            .await?;
            if let Some(key) = api.new_admin_key() {
                println!(
                    "Admin API key (shown once, saved to {}): {key}",
                    config.api.data_dir.join("admin.key").display()
                );
            }
            tracing::info!(listen = %api.local_addr(), "api serving");
            supervisor.watch_health(api.health());
            let shutdown = supervisor.shutdown();
            supervisor.spawn("api", async move {
                api.serve(shutdown).await.map_err(Into::into)
            });
        }
        Service::Eventlog { .. } => {
            supervisor.spawn_service("eventlog", &config.instance, |health, shutdown| {
                bulkhead_eventlog::run(config.eventlog, bus, health, shutdown)
            });
        }
        Service::Inventory { .. } => {
            supervisor.spawn_service("inventory", &config.instance, |health, shutdown| {
                bulkhead_inventory::run(config.inventory, bus, health, shutdown)
            });
        }
        Service::Labeling { .. } => {
            supervisor.spawn_service("labeling", &config.instance, |health, shutdown| {
                bulkhead_labeling::run(config.labeling, bus, health, shutdown)
            });
        }
        Service::Clusterlink { .. } => {
            supervisor.spawn_service("clusterlink", &config.instance, |health, shutdown| {
                bulkhead_clusterlink::run(config.clusterlink, bus, health, shutdown)
            });
        }
    }
    let admin = supervisor.serve_admin(config.admin_listen).await?;
    tracing::info!(%admin, "admin endpoints serving");
    Ok(supervisor.run().await)
}
