use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::Client;
use crate::{inventory, labeling, log, serve, up};

/// Bulkhead: micro-segmentation for Kubernetes and OpenShift.
///
/// Label workloads, write label-scoped allow rules, and Bulkhead compiles and delivers firewall
/// policy to every node and pod, and keeps clusters protected when the control plane is away.
#[derive(Debug, Parser)]
#[command(
    name = "bulkhead",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How the CLI reaches the REST API.
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// Base URL of the Bulkhead API.
    #[arg(
        long,
        global = true,
        env = "BULKHEAD_SERVER",
        default_value = "http://127.0.0.1:8443"
    )]
    pub server: String,
    /// API key [default: the contents of ./bulkhead-data/admin.key, when present].
    #[arg(long, global = true, env = "BULKHEAD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole control plane in one process (in-process bus, single-node event log).
    Up(up::UpArgs),
    /// Run one service against NATS, for compose and Kubernetes deployments.
    Serve(serve::ServeArgs),
    /// Show the health of every service; exits 0 only when all are healthy.
    Health,
    /// Serve a simulated Kubernetes API (for demos, tests and load tests).
    Kubesim(bulkhead_kubesim::KubesimArgs),
    /// The event log: status, events, membership.
    #[command(subcommand)]
    Log(log::LogCommand),
    #[command(flatten)]
    Inventory(inventory::InventoryCommand),
    #[command(flatten)]
    Labeling(labeling::LabelingCommand),
}

/// Where `bulkhead up` keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "bulkhead-data";

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Up(args) => up::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Health => Client::new(&self.remote)?.health(self.remote.output).await,
            Command::Kubesim(args) => {
                bulkhead_kubesim::run(args, bulkhead_runtime::shutdown::on_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Log(command) => {
                log::run(&Client::new(&self.remote)?, self.remote.output, command).await
            }
            Command::Inventory(command) => {
                inventory::run(&Client::new(&self.remote)?, self.remote.output, command).await
            }
            Command::Labeling(command) => {
                labeling::run(&Client::new(&self.remote)?, self.remote.output, command).await
            }
        }
    }
}

/// The key the CLI sends: `--api-key`, `BULKHEAD_API_KEY`, or the local admin key file.
pub fn resolve_api_key(explicit: Option<&str>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .or_else(|| std::fs::read_to_string(PathBuf::from(DEFAULT_DATA_DIR).join("admin.key")).ok())
        .map(|k| k.trim().to_owned())
}
