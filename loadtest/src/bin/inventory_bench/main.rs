//! `inventory-bench`: the inventory benchmark of issue 4.
//!
//! ```text
//!  kubesim (in this process: 200 nodes × 110 pods) ◄──watch── clusterlink ──reports──► inventory
//!     ▲ pod label changes, 100/s                                 (processes, one nats-server)
//!     │                                                                  │ append
//!  this benchmark ◄─────────── committed events ◄──────────────────── eventlog
//! ```
//!
//! One run measures, every Bulkhead service its own `bulkhead serve` process:
//! - **converge**: from clusterlink's start to every object of the simulated cluster committed
//!   in the log and counted by inventory's cluster view;
//! - **memory**: inventory's resident memory before clusterlink starts and once converged and
//!   every node, pod, deployment and service carries the four effective labels labeling would
//!   write (appended to `effective/<cluster>` as labeling does), per pod of the cluster;
//! - **change → commit**: pods relabelled in the simulator at a steady rate; for each, the time
//!   until the log publishes the committed `ObjectApplied` that carries the new label;
//! - **floors**, in the same run: the log alone taking the same events in report-sized batches
//!   (what convergence cannot beat), one event appended alone (what a change cannot beat), and
//!   the size of a pod's event on the wire (what a pod's memory is read against).
//!
//! It prints the figures and the ratios; it never fails on them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bulkhead_kubesim::{Kind, SimConfig, Simulator};
use bulkhead_loadtest::control_plane::{ControlPlane, REQUEST_TIMEOUT, bulkhead_binary};
use bulkhead_loadtest::eventlog::{append_floor, append_to, follow_stream};
use bulkhead_loadtest::nats::Installed;
use bulkhead_loadtest::process::bench_main;
use bulkhead_loadtest::report::{Goal, millis, ratio, table};
use bulkhead_runtime::bus::TypedBus;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::NewEvent;
use bulkhead_schema::messages::inventory::{
    ClusterView, InventoryEvent, InventoryFilter, InventoryItems, InventoryQuery,
    InventoryQueryKind, InventoryReply, LabelSelector, ResourceKind,
};
use bulkhead_schema::messages::labeling::{
    EffectiveLabel, EnforcementMode, EntityKind, EntityLabels, EntityRef, LabelSource,
    LabelingEvent, OutputPosition, label_href,
};
use clap::Parser;
use hdrhistogram::Histogram;

/// The inventory benchmark: converge time, memory per pod and change → commit latency for one
/// simulated cluster, next to the event log's own floors. Prints figures, never fails on them.
#[derive(Debug, Parser)]
struct Args {
    /// 20 nodes and 200 changes: checks that everything runs, figures not to quote.
    #[arg(long)]
    quick: bool,
    /// Nodes of the simulated cluster [default: 200; 20 with --quick].
    #[arg(long)]
    nodes: Option<usize>,
    /// Pods per node.
    #[arg(long, default_value_t = 110)]
    pods_per_node: usize,
    /// Pod changes per second in the latency phase.
    #[arg(long, default_value_t = 100)]
    change_rate: u32,
    /// Pod changes in the latency phase [default: 1000; 200 with --quick].
    #[arg(long)]
    changes: Option<usize>,
    /// The `bulkhead` binary to run [default: `cargo build --release -p bulkhead`, then the
    /// `bulkhead` next to this benchmark].
    #[arg(long)]
    bulkhead: Option<PathBuf>,
}

const CLUSTER_NAME: &str = "bench";
const POLL: Duration = Duration::from_millis(20);
const CONVERGE_LIMIT: Duration = Duration::from_secs(300);
/// The label the latency phase sets; its value is the change's number.
const CHANGE_LABEL: &str = "bench.bulkhead.io/change";
/// What clusterlink batches into one report (its default `report_batch_size`).
const REPORT_BATCH: usize = 500;
/// Entities per `effective_labels` event the benchmark writes (about 150 B each).
const ENTITIES_PER_EVENT: usize = 100;
/// What one append may carry, with room for the envelope (the log's limit is 512 KiB).
const APPEND_BYTES: usize = 448 * 1024;
const TARGET_CONVERGE: Duration = Duration::from_secs(10);
const TARGET_P99: Duration = Duration::from_millis(50);
const TARGET_BYTES_PER_POD: f64 = 2048.0;

#[tokio::main]
async fn main() -> ExitCode {
    bench_main("inventory-bench", run(Args::parse())).await
}

/// What the committed stream has shown so far: the uids of every kind's applied objects, the
/// events' sizes, and when each numbered change arrived.
#[derive(Default)]
struct Committed {
    uids: HashMap<ResourceKind, HashSet<String>>,
    events: u64,
    bytes: u64,
    pod_event_bytes: Vec<usize>,
    changes: HashMap<u64, Instant>,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let nodes = args.nodes.unwrap_or(if args.quick { 20 } else { 200 });
    let changes = args.changes.unwrap_or(if args.quick { 200 } else { 1000 });
    let binary = bulkhead_binary(args.bulkhead)?;
    let installed = Installed::probe()?;
    println!(
        "# inventory-bench: {nodes} nodes × {} pods, {changes} changes at {}/s",
        args.pods_per_node, args.change_rate
    );
    println!(
        "bulkhead: {}; nats-server: {}",
        binary.display(),
        installed.version
    );

    let seeding = Instant::now();
    let sim = bulkhead_kubesim::Simulator::start(SimConfig {
        nodes,
        pods_per_node: args.pods_per_node,
        history: 1_000_000,
        ..SimConfig::default()
    })
    .await?;
    let simulator = sim.simulator();
    println!(
        "simulator: {} pods, {} objects in all, seeded in {:.1} s",
        simulator.count(Kind::Pod),
        expected_objects(&simulator).values().sum::<usize>(),
        seeding.elapsed().as_secs_f64()
    );

    let plane = ControlPlane::start(&binary, &installed, "inventory-bench").await?;
    let bus = plane.bus.clone();
    let cluster = plane.create_cluster(CLUSTER_NAME).await?;
    let committed = Arc::new(Mutex::new(Committed::default()));
    let follower = tokio::spawn(follow_committed(
        bus.clone(),
        cluster.id.clone(),
        committed.clone(),
    ));
    let memory_before = plane.inventory.settled_resident_bytes().await?;

    // Converge: clusterlink starts; done when the log holds every object and inventory counts
    // every node and pod.
    let expected = expected_objects(&simulator);
    let started = Instant::now();
    let _clusterlink = plane.start_clusterlink(&cluster, &sim).await?;
    let converged = loop {
        if all_committed(&committed, &expected) {
            let view = cluster_view(&bus, &cluster.id).await?;
            if view.pods as usize == expected[&ResourceKind::Pod]
                && view.nodes as usize == expected[&ResourceKind::Node]
            {
                break started.elapsed();
            }
        }
        ensure!(
            started.elapsed() < CONVERGE_LIMIT,
            "not converged within {CONVERGE_LIMIT:?}"
        );
        tokio::time::sleep(POLL).await;
    };
    let memory_converged = plane.inventory.settled_resident_bytes().await?;
    let labelled_pods = write_effective_labels(&bus, &cluster.id, &simulator).await?;
    wait_labelled(&bus, labelled_pods).await?;
    let memory_after = plane.inventory.settled_resident_bytes().await?;
    let (events, bytes, pod_event_bytes) = {
        let seen = committed.lock().unwrap();
        let mut sizes = seen.pod_event_bytes.clone();
        sizes.sort_unstable();
        (seen.events, seen.bytes, sizes[sizes.len() / 2])
    };

    // Change → commit under a steady rate of pod changes.
    let latency = relabel_pods(&simulator, &committed, changes, args.change_rate).await?;

    // Floors: the log alone, with the same events and with one event at a time.
    let average_event = (bytes / events.max(1)) as usize;
    let log_floor = append_in_batches(&bus, events as usize, average_event).await?;
    let single = append_one_at_a_time(&bus, changes.min(500), pod_event_bytes).await?;
    follower.abort();

    let pods = expected[&ResourceKind::Pod];
    let per_pod = memory_after.saturating_sub(memory_before) as f64 / pods as f64;
    let mut out = table(&[
        "measure",
        "Bulkhead",
        "floor",
        "vs floor",
        "target",
        "vs target",
    ]);
    out.add_row(vec![
        "converge: clusterlink start → all committed and counted".to_owned(),
        format!("{:.2} s", converged.as_secs_f64()),
        format!(
            "{:.2} s (log alone, {events} events)",
            log_floor.as_secs_f64()
        ),
        ratio(converged.as_secs_f64(), log_floor.as_secs_f64(), Goal::None),
        format!("≤ {} s", TARGET_CONVERGE.as_secs()),
        ratio(
            converged.as_secs_f64(),
            TARGET_CONVERGE.as_secs_f64(),
            Goal::AtMostTheirs,
        ),
    ]);
    out.add_row(vec![
        "inventory memory per pod, effective labels included".to_owned(),
        format!("{per_pod:.0} B"),
        format!("{pod_event_bytes} B (a pod's event, MessagePack)"),
        ratio(per_pod, pod_event_bytes as f64, Goal::None),
        format!("≤ {TARGET_BYTES_PER_POD:.0} B"),
        ratio(per_pod, TARGET_BYTES_PER_POD, Goal::AtMostTheirs),
    ]);
    for (name, quantile) in [("p50", 0.5), ("p99", 0.99)] {
        let ours = latency.value_at_quantile(quantile);
        let floor = single.value_at_quantile(quantile);
        out.add_row(vec![
            format!("pod change → committed, {name}"),
            millis(ours),
            format!("{} (one append alone)", millis(floor)),
            ratio(ours as f64, floor as f64, Goal::None),
            if name == "p99" {
                format!("≤ {} ms", TARGET_P99.as_millis())
            } else {
                String::new()
            },
            if name == "p99" {
                ratio(
                    ours as f64,
                    TARGET_P99.as_micros() as f64,
                    Goal::AtMostTheirs,
                )
            } else {
                String::new()
            },
        ]);
    }
    println!();
    println!("{out}");
    println!(
        "\ninventory resident memory: {:.1} MiB before clusterlink, {:.1} MiB converged, {:.1} MiB \
         with effective labels; {events} events ({:.1} MiB) committed while converging; {} changes, max {}",
        memory_before as f64 / 1048576.0,
        memory_converged as f64 / 1048576.0,
        memory_after as f64 / 1048576.0,
        bytes as f64 / 1048576.0,
        latency.len(),
        millis(latency.max()),
    );
    sim.stop().await;
    Ok(())
}

/// Appends, as labeling would, four effective labels (`role` of five, `app` of its own, `env`,
/// `loc`) for every node, pod on the pod network, deployment and service of the simulator, in
/// appends of [`REPORT_BATCH`] entities; the number of pods labelled.
async fn write_effective_labels(
    bus: &TypedBus,
    cluster_id: &str,
    simulator: &Simulator,
) -> anyhow::Result<usize> {
    let mut apps: HashMap<String, u32> = HashMap::new();
    let mut entities = Vec::new();
    let mut pods = 0;
    for (kind, entity_kind) in [
        (Kind::Node, EntityKind::Node),
        (Kind::Pod, EntityKind::Pod),
        (Kind::Deployment, EntityKind::KubeWorkload),
        (Kind::Service, EntityKind::Service),
    ] {
        for object in simulator.list(kind, None) {
            if object["spec"]["hostNetwork"] == serde_json::json!(true) {
                continue;
            }
            pods += usize::from(kind == Kind::Pod);
            let meta = &object["metadata"];
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
            let app = text(&meta["labels"]["app"]);
            let next = 100 + apps.len() as u32;
            let app_id = *apps.entry(app.clone()).or_insert(next);
            let label = |key: &str, id: u32, value: String| {
                let label = EffectiveLabel {
                    href: label_href(id),
                    value,
                    source: LabelSource::Profile,
                };
                (key.to_owned(), label)
            };
            entities.push(EntityLabels {
                entity: EntityRef {
                    kind: entity_kind,
                    uid: text(&meta["uid"]),
                    namespace: text(&meta["namespace"]),
                    name: text(&meta["name"]),
                },
                managed: true,
                enforcement_mode: Some(EnforcementMode::Full),
                labels: [
                    label("role", 10 + app_id % 5, format!("role-{}", app_id % 5)),
                    label("app", app_id, app),
                    label("env", 2, "prod".into()),
                    label("loc", 1, "eu".into()),
                ]
                .into(),
                removed: false,
            });
        }
    }
    let stream = LabelingEvent::effective_stream(cluster_id);
    for (i, chunk) in entities.chunks(REPORT_BATCH).enumerate() {
        // Events of at most ENTITIES_PER_EVENT entities, as labeling keeps each event under the
        // log's event size limit.
        let events = chunk
            .chunks(ENTITIES_PER_EVENT)
            .map(|entities| {
                let event = LabelingEvent::EffectiveLabels {
                    cluster_id: cluster_id.to_owned(),
                    through: OutputPosition::default(),
                    entities: entities.to_vec(),
                };
                Ok(NewEvent {
                    event_type: LabelingEvent::EVENT_TYPE.into(),
                    data: rmp_serde::to_vec_named(&event)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        append_to(bus, &stream, &format!("bench-effective-{i}"), events).await?;
    }
    Ok(pods)
}

/// Waits until inventory lists `pods` pods by their effective label `loc=eu`.
async fn wait_labelled(bus: &TypedBus, pods: usize) -> anyhow::Result<()> {
    let query = InventoryQuery {
        what: InventoryQueryKind::PodWorkloads,
        filter: InventoryFilter {
            labels: vec![vec![LabelSelector::KeyValue {
                key: "loc".into(),
                value: "eu".into(),
            }]],
            ..Default::default()
        },
        offset: 0,
        limit: 1,
    };
    let started = Instant::now();
    loop {
        let reply = bus
            .request::<InventoryQuery, InventoryReply>(
                &Subject::inventory_query(),
                &query,
                REQUEST_TIMEOUT,
            )
            .await?
            .message;
        match reply {
            InventoryReply::Page(page) if page.total as usize >= pods => return Ok(()),
            InventoryReply::Page(_) => {}
            InventoryReply::Rejected { kind, reason } => bail!("labelled pods: {kind:?}: {reason}"),
        }
        ensure!(
            started.elapsed() < CONVERGE_LIMIT,
            "inventory did not show every pod's effective labels within {CONVERGE_LIMIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Object counts by kind in the simulator: what the log must hold once converged.
fn expected_objects(simulator: &Simulator) -> HashMap<ResourceKind, usize> {
    ResourceKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let sim_kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == kind.kube_kind())?;
            Some((kind, simulator.count(sim_kind)))
        })
        .collect()
}

fn all_committed(committed: &Mutex<Committed>, expected: &HashMap<ResourceKind, usize>) -> bool {
    let seen = committed.lock().unwrap();
    expected
        .iter()
        .all(|(kind, count)| seen.uids.get(kind).map_or(0, HashSet::len) >= *count)
}

async fn cluster_view(bus: &TypedBus, cluster_id: &str) -> anyhow::Result<ClusterView> {
    let reply = bus
        .request::<InventoryQuery, InventoryReply>(
            &Subject::inventory_query(),
            &InventoryQuery {
                what: InventoryQueryKind::Cluster {
                    cluster_id: cluster_id.to_owned(),
                },
                filter: Default::default(),
                offset: 0,
                limit: 1,
            },
            REQUEST_TIMEOUT,
        )
        .await?
        .message;
    match reply {
        InventoryReply::Page(page) => match page.items {
            InventoryItems::Clusters(mut clusters) if !clusters.is_empty() => {
                Ok(clusters.swap_remove(0))
            }
            other => bail!("cluster query answered {other:?}"),
        },
        InventoryReply::Rejected { kind, reason } => bail!("cluster query: {kind:?}: {reason}"),
    }
}

/// Records what the log commits to the cluster's stream: object uids by kind, sizes, and the
/// numbered changes.
async fn follow_committed(
    bus: TypedBus,
    cluster_id: String,
    committed: Arc<Mutex<Committed>>,
) -> anyhow::Result<()> {
    follow_stream(
        bus,
        InventoryEvent::stream(&cluster_id),
        |events, arrived| {
            let mut seen = committed.lock().unwrap();
            for event in &events {
                if event.event_type != InventoryEvent::EVENT_TYPE {
                    continue;
                }
                let Ok(InventoryEvent::ObjectApplied { object, .. }) =
                    rmp_serde::from_slice::<InventoryEvent>(&event.data)
                else {
                    continue;
                };
                seen.events += 1;
                seen.bytes += event.data.len() as u64;
                if object.kind == ResourceKind::Pod {
                    seen.pod_event_bytes.push(event.data.len());
                }
                if let Some(change) = object.labels.get(CHANGE_LABEL)
                    && let Ok(number) = change.parse()
                {
                    seen.changes.entry(number).or_insert(arrived);
                }
                seen.uids.entry(object.kind).or_default().insert(object.uid);
            }
        },
    )
    .await
}

/// Relabels `count` distinct pods at `rate` per second and returns, in microseconds, how long
/// each change took to come back committed (from just before the simulator applied it).
async fn relabel_pods(
    simulator: &Simulator,
    committed: &Mutex<Committed>,
    count: usize,
    rate: u32,
) -> anyhow::Result<Histogram<u64>> {
    let pods: Vec<(String, String)> = simulator
        .list(Kind::Pod, None)
        .into_iter()
        .filter(|p| p["spec"]["hostNetwork"] != serde_json::json!(true))
        .map(|p| {
            let meta = &p["metadata"];
            (
                meta["namespace"].as_str().unwrap_or_default().to_owned(),
                meta["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    ensure!(pods.len() >= count, "only {} pods to change", pods.len());
    let step = pods.len() / count;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = HashMap::with_capacity(count);
    for number in 0..count as u64 {
        tick.tick().await;
        let (namespace, name) = &pods[number as usize * step];
        let pod = simulator
            .get(Kind::Pod, namespace, name)
            .with_context(|| format!("pod {namespace}/{name} vanished"))?;
        let mut labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
        labels.insert(CHANGE_LABEL.into(), number.to_string());
        sent.insert(number, Instant::now());
        simulator.set_labels(Kind::Pod, namespace, name, labels)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if committed.lock().unwrap().changes.len() >= count {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{} of {count} changes committed after 30 s",
            committed.lock().unwrap().changes.len()
        );
        tokio::time::sleep(POLL).await;
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let seen = committed.lock().unwrap();
    for (number, at) in sent {
        let arrived = seen.changes[&number];
        histogram.record(arrived.saturating_duration_since(at).as_micros() as u64)?;
    }
    Ok(histogram)
}

/// `count` events of `size` bytes appended in report-sized batches (as many as fit one
/// append), four batches in flight
/// (clusterlink's watchers report concurrently): how long the log alone takes for them.
async fn append_in_batches(bus: &TypedBus, count: usize, size: usize) -> anyhow::Result<Duration> {
    let per_batch = REPORT_BATCH.min(APPEND_BYTES / size.max(1)).max(1);
    let batches = count.div_ceil(per_batch);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let bus = bus.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let batch = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if batch >= batches {
                        return anyhow::Ok(());
                    }
                    let events = per_batch.min(count - batch * per_batch);
                    append(&bus, &format!("floor/batch/{batch}"), events, size).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}

/// `count` appends of one `size`-byte event, one after the other: microseconds each.
async fn append_one_at_a_time(
    bus: &TypedBus,
    count: usize,
    size: usize,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new(3)?;
    for i in 0..count {
        let started = Instant::now();
        append(bus, &format!("floor/single/{i}"), 1, size).await?;
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(histogram)
}

/// `events` filler events of `size` bytes each, appended straight to the log.
async fn append(bus: &TypedBus, key: &str, events: usize, size: usize) -> anyhow::Result<()> {
    let filler = (0..events)
        .map(|_| NewEvent {
            event_type: "bench.Floor".into(),
            data: vec![0x5a; size],
        })
        .collect();
    append_floor(bus, key, filler).await
}
