//! `bulkhead up`: the whole control plane in one process, on embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bulkhead_eventlog::EventlogConfig;
use bulkhead_inventory::InventoryConfig;
use bulkhead_labeling::LabelingConfig;
use bulkhead_runtime::bus::{InProcessBus, TypedBus};
use bulkhead_runtime::{shutdown, telemetry};

use crate::cli::DEFAULT_DATA_DIR;
use crate::demo;
use crate::supervisor::Supervisor;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the control plane keeps its data (event log, keys).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Address of the REST API and web console.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub admin_listen: SocketAddr,
    /// Also start a simulated Kubernetes cluster running a small multi-tier app, paired to this
    /// control plane (kubeconfig in <data-dir>/demo.kubeconfig).
    #[arg(long)]
    pub demo: bool,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = telemetry::init("bulkhead")?;
    let mut supervisor = Supervisor::new(shutdown::on_signal());
    let bus = TypedBus::new(Arc::new(InProcessBus::default()));

    let eventlog_config = EventlogConfig::single_node(args.data_dir.join("eventlog"));
    let log_bus = bus.clone();
    supervisor.spawn_service("eventlog", "1", |health, shutdown| {
        bulkhead_eventlog::run(eventlog_config, log_bus, health, shutdown)
    });

    let inventory_config = InventoryConfig::embedded(args.data_dir.join("inventory"));
    let inventory_bus = bus.clone();
    supervisor.spawn_service("inventory", "1", |health, shutdown| {
        bulkhead_inventory::run(inventory_config, inventory_bus, health, shutdown)
    });
    let labeling_config = LabelingConfig::embedded(args.data_dir.join("labeling"));
    let labeling_bus = bus.clone();
    supervisor.spawn_service("labeling", "1", |health, shutdown| {
        bulkhead_labeling::run(labeling_config, labeling_bus, health, shutdown)
    });
    let expected_services = ["api", "eventlog", "inventory", "labeling"]
        .map(String::from)
        .to_vec();
    if args.demo {
        // Its clusterlink reports through the cluster's own state (`bulkhead cluster list`).
        demo::start(&mut supervisor, bus.clone(), &args.data_dir).await?;
    }

    let api = bulkhead_api::bind(
        bulkhead_api::ApiConfig {
            listen: args.listen,
            data_dir: args.data_dir.clone(),
            expected_services,
        },
        bus.clone(),
    )
    .await?;
    let api_addr = api.local_addr();
    let new_key = api.new_admin_key().map(str::to_owned);
    supervisor.watch_health(api.health());
    let shutdown = supervisor.shutdown();
    supervisor.spawn("api", async move {
        api.serve(shutdown).await.map_err(Into::into)
    });
    let admin_addr = supervisor.serve_admin(args.admin_listen).await?;

    print_banner(&args, api_addr, admin_addr, new_key.as_deref());
    Ok(supervisor.run().await)
}

fn print_banner(args: &UpArgs, api: SocketAddr, admin: SocketAddr, new_key: Option<&str>) {
    let key_file = args.data_dir.join("admin.key");
    println!("Bulkhead is up.");
    println!("  REST API     http://{api}/api/v2   (OpenAPI: http://{api}/api/v2/openapi.json)");
    println!("  metrics      http://{admin}/metrics");
    println!("  data         {}", args.data_dir.display());
    if let Some(key) = new_key {
        println!();
        println!(
            "  Admin API key (shown once, also saved to {}):",
            key_file.display()
        );
        println!("    {key}");
    }
    if args.demo {
        let kubeconfig = demo::kubeconfig_path(&args.data_dir);
        println!();
        println!(
            "  Demo cluster (simulated Kubernetes API), kubeconfig {}:",
            kubeconfig.display()
        );
        println!(
            "    kubectl --kubeconfig {} get pods -A",
            kubeconfig.display()
        );
        println!(
            "    kubectl --kubeconfig {} -n shop scale deployment/frontend --replicas=5",
            kubeconfig.display()
        );
        println!("    bulkhead --server http://{api} container-workloads");
    }
    println!();
    println!("Try:  bulkhead --server http://{api} health");
    println!(
        "      (the CLI reads the key from {} when run here, or from BULKHEAD_API_KEY)",
        key_file.display()
    );
    println!("Stop with Ctrl-C.");
}
