//! `labeling-bench`: the labeling benchmark of issue 5.
//!
//! ```text
//!  kubesim, in this process: one namespace,   ◄──watch── clusterlink ──reports──► inventory
//!  1,000 deployments × 10 pods, annotated                                            │ append
//!  bulkhead.io/app, env and role                                                     ▼
//!  this benchmark ──UpdateProfile (loc: eu ⇄ us)──► labeling ◄──committed──────── eventlog
//!        ▲                                              │ append EffectiveLabels  ▲     │
//!        │                                              └──(effective/<cluster>)──┘     │
//!        └───────────────── committed events of effective/<cluster> ────────────────────┘
//! ```
//!
//! Every Bulkhead service is its own `bulkhead serve` process on one nats-server. The
//! namespace's profile (created over the bus before the cluster is fed, linked by its pairing
//! key) is managed and assigns `loc`; the pods take `app`, `env` and `role` from their
//! deployments' template annotations. One run measures:
//! - **profile edit → committed**: the profile's `loc` changed (eu → us and back, `--rounds`
//!   times), timed from the command's sending until the log has published the first entity's,
//!   every pod's and every entity's (pods and kube workloads) new effective labels;
//! - **memory**: labeling's resident memory before clusterlink starts (labels and profile made)
//!   and once every entity's labels are committed, per labelled entity;
//! - **floors**, in the same run: the log alone taking each edit's output (the same events,
//!   byte for byte, in the same appends, one after the other as labeling sends them), and the
//!   size of an entity's effective labels on the wire (what its memory is read against).
//!
//! It prints the figures and the ratios; it never fails on them.

mod effective;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bulkhead_kubesim::{Kind, SimConfig, Simulator};
use bulkhead_loadtest::control_plane::{
    ControlPlane, PairedCluster, REQUEST_TIMEOUT, bulkhead_binary, request_when_served,
};
use bulkhead_loadtest::eventlog::append_floor;
use bulkhead_loadtest::nats::Installed;
use bulkhead_loadtest::process::bench_main;
use bulkhead_loadtest::report::{Goal, load_average, machine, ratio, table};
use bulkhead_runtime::bus::TypedBus;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::NewEvent;
use bulkhead_schema::messages::labeling::{
    EntityKind, Href, LabelingCommand, LabelingCommandReply, LabelingItem, ProfileLabel,
    ProfileSettings,
};
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::json;

use crate::effective::{EDITED_KEY, Effective, Span};

/// The labeling benchmark: how long a profile edit relabelling every pod of a namespace takes
/// to be committed, and labeling's memory per labelled entity, next to the event log's own
/// floor. Prints figures, never fails on them.
#[derive(Debug, Parser)]
struct Args {
    /// 500 pods and one round: checks that everything runs, figures not to quote.
    #[arg(long)]
    quick: bool,
    /// Pods of the namespace, 10 to a deployment [default: 10,000; 500 with --quick].
    #[arg(long)]
    pods: Option<usize>,
    /// Rounds of two timed edits each (to `us`, back to `eu`) [default: 5; 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// The `bulkhead` binary to run [default: `cargo build --release -p bulkhead`, then the
    /// `bulkhead` next to this benchmark].
    #[arg(long)]
    bulkhead: Option<PathBuf>,
}

const CLUSTER_NAME: &str = "bench";
const NAMESPACE: &str = "bench";
const PODS_PER_DEPLOYMENT: usize = 10;
/// Fewer than a node holds (110), so that every pod is scheduled.
const PODS_PER_NODE: usize = 100;
/// The values the edits switch the profile's `loc` between; the first is the profile's own.
const LOCATIONS: [&str; 2] = ["eu", "us"];
/// `app` (one label per deployment), `env`, `role`, all from annotations; and `loc`.
const LABEL_KEYS: usize = 4;
const ENV: &str = "prod";
const ROLE: &str = "web";
/// Label-creating commands in flight at once.
const COMMANDS_IN_FLIGHT: usize = 16;
const POLL: Duration = Duration::from_millis(5);
/// How long the effective stream must stay still before an edit, so that nothing from before
/// is timed with it.
const QUIET: Duration = Duration::from_millis(500);
const FEED_LIMIT: Duration = Duration::from_secs(300);
const EDIT_LIMIT: Duration = Duration::from_secs(60);
/// The issue's target for a profile edit relabelling 10,000 pods.
const TARGET_EDIT: Duration = Duration::from_millis(200);
/// The bound labeling's memory test held per labelled entity before this benchmark measured it.
const TARGET_BYTES_PER_ENTITY: f64 = 1024.0;

#[tokio::main]
async fn main() -> ExitCode {
    bench_main("labeling-bench", run(Args::parse())).await
}

/// The entities every edit relabels, by uid.
struct Relabelled {
    pods: Vec<String>,
    workloads: Vec<String>,
}

impl Relabelled {
    fn all(&self) -> Vec<String> {
        self.pods.iter().chain(&self.workloads).cloned().collect()
    }
}

/// One timed edit: how long until the command was answered (the profile committed and applied
/// by labeling), until the first entity's, the last pod's and the last entity's labels were
/// committed; the entity labels it wrote, and the appends that carried them.
struct Edit {
    answered: Duration,
    first: Duration,
    pods: Duration,
    all: Duration,
    writes: u64,
    appends: Vec<Vec<NewEvent>>,
}

/// The log alone taking an edit's appends: how long until the first, and all, were committed.
struct Floor {
    first: Duration,
    all: Duration,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let pods = args.pods.unwrap_or(if args.quick { 500 } else { 10_000 });
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 });
    ensure!(
        pods > 0 && rounds > 0,
        "--pods and --rounds must be positive"
    );
    let deployments = pods.div_ceil(PODS_PER_DEPLOYMENT);
    let binary = bulkhead_binary(args.bulkhead)?;
    let installed = Installed::probe()?;
    println!(
        "# labeling-bench: {pods} pods in {deployments} deployments, one namespace; {rounds} \
         rounds of two profile edits{}",
        if args.quick {
            " (--quick: not figures to quote)"
        } else {
            ""
        }
    );
    println!(
        "bulkhead: {}; nats-server: {}; machine: {}, shared by every process of the run; load \
         average before: {}",
        binary.display(),
        installed.version,
        machine(),
        load_average()
    );

    let sim = Simulator::start(SimConfig {
        nodes: pods.div_ceil(PODS_PER_NODE),
        history: 1_000_000,
        ..SimConfig::default()
    })
    .await?;
    let plane = ControlPlane::start(&binary, &installed, "labeling-bench").await?;
    let labeling_dir = plane.data_dir("labeling");
    let labeling = plane
        .start_service("labeling", &["labeling", "--data-dir", &labeling_dir])
        .await?;
    let cluster = plane.create_cluster(CLUSTER_NAME).await?;
    let (effective, follower) = effective::follow(plane.bus.clone(), &cluster.id);

    let locations = create_labels(&plane.bus, deployments).await?;
    let (profile_id, pairing_key) = create_profile(&plane.bus, &cluster, &locations[0]).await?;
    let simulator = sim.simulator();
    let relabelled = tokio::task::spawn_blocking(move || {
        create_workloads(&simulator, pods, deployments, &pairing_key)
    })
    .await??;
    let memory_before = labeling.settled_resident_bytes().await?;

    // The feed: clusterlink reports the namespace; labeling resolves every pod and workload.
    let started = Instant::now();
    let _clusterlink = plane.start_clusterlink(&cluster, &sim).await?;
    let labelled = wait_labelled(
        &effective,
        &relabelled.all(),
        locations[0].value,
        started,
        FEED_LIMIT,
    )
    .await?;
    let fed = labelled.last - started;
    let memory_after = labeling.settled_resident_bytes().await?;
    let (entities, by_kind, entity_bytes) = {
        let seen = effective.lock().unwrap();
        let mut by_kind = BTreeMap::new();
        for entity in seen.entities.values() {
            *by_kind.entry(entity.kind).or_insert(0usize) += 1;
        }
        let mut sizes = seen.bytes_per_entity.clone();
        sizes.sort_unstable();
        (seen.entities.len(), by_kind, percentile(&sizes, 0.5))
    };

    let mut edits = Vec::with_capacity(rounds * 2);
    for round in 0..rounds {
        for location in [&locations[1], &locations[0]] {
            let edit = timed_edit(
                &plane.bus,
                &effective,
                &cluster,
                &profile_id,
                location,
                &relabelled,
            )
            .await?;
            eprintln!(
                "round {}: loc → {}: answered in {:.1} ms, first entity in {:.1} ms, every pod \
                 in {:.1} ms, every entity in {:.1} ms, {} entity labels written in {} appends",
                round + 1,
                location.value,
                edit.answered.as_secs_f64() * 1e3,
                edit.first.as_secs_f64() * 1e3,
                edit.pods.as_secs_f64() * 1e3,
                edit.all.as_secs_f64() * 1e3,
                edit.writes,
                edit.appends.len()
            );
            edits.push(edit);
        }
    }
    follower.abort();

    let floors = log_alone(&plane.bus, &edits).await?;

    report(&Figures {
        pods,
        deployments,
        fed,
        memory_before,
        memory_after,
        entities,
        by_kind,
        entity_bytes,
        edits,
        floors,
    });
    sim.stop().await;
    Ok(())
}

/// The floor: the log alone taking each edit's appends, one after the other, as labeling sends
/// them.
async fn log_alone(bus: &TypedBus, edits: &[Edit]) -> anyhow::Result<Vec<Floor>> {
    let mut floors = Vec::with_capacity(edits.len());
    for (number, edit) in edits.iter().enumerate() {
        let started = Instant::now();
        let mut first = None;
        for (index, events) in edit.appends.iter().enumerate() {
            append_floor(bus, &format!("floor/{number}/{index}"), events.clone()).await?;
            first.get_or_insert_with(|| started.elapsed());
        }
        floors.push(Floor {
            first: first.unwrap_or_default(),
            all: started.elapsed(),
        });
    }
    Ok(floors)
}

/// A label `key=value`, created over the bus; its href.
async fn create_label(bus: &TypedBus, key: &str, value: &str) -> anyhow::Result<Href> {
    let command = LabelingCommand::CreateLabel {
        key: key.into(),
        value: value.into(),
    };
    match command_done(bus, &command).await? {
        (LabelingItem::Label(label), _) => Ok(Href { href: label.href }),
        (other, _) => bail!("creating label {key}={value} made {other:?}"),
    }
}

/// A labeling command that must succeed: what it made, and the pairing key when it made a
/// profile. Sent again while labeling does not answer yet (it first catches up with the log).
async fn command_done(
    bus: &TypedBus,
    command: &LabelingCommand,
) -> anyhow::Result<(LabelingItem, Option<String>)> {
    let reply = request_when_served(
        bus,
        &Subject::labeling_command(),
        command,
        Duration::from_secs(30),
    )
    .await?;
    match reply {
        LabelingCommandReply::Done { item, pairing_key } => Ok((item, pairing_key)),
        other => bail!("{command:?}: {other:?}"),
    }
}

/// One of [`LOCATIONS`], as a label.
struct Location {
    value: &'static str,
    href: Href,
}

/// Every label the annotations name, and both locations.
async fn create_labels(bus: &TypedBus, deployments: usize) -> anyhow::Result<[Location; 2]> {
    let location = |value: &'static str| async move {
        let href = create_label(bus, EDITED_KEY, value).await?;
        anyhow::Ok(Location { value, href })
    };
    let locations = [location(LOCATIONS[0]).await?, location(LOCATIONS[1]).await?];
    let labels = [("env", ENV.to_owned()), ("role", ROLE.to_owned())]
        .into_iter()
        .chain((0..deployments).map(|d| ("app", app_name(d))));
    futures::stream::iter(labels)
        .map(|(key, value)| async move { create_label(bus, key, &value).await })
        .buffer_unordered(COMMANDS_IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(locations)
}

/// The namespace's profile, pre-created managed with `loc` assigned: its id and pairing key.
async fn create_profile(
    bus: &TypedBus,
    cluster: &PairedCluster,
    location: &Location,
) -> anyhow::Result<(String, String)> {
    let command = LabelingCommand::CreateProfile {
        cluster_id: cluster.id.clone(),
        name: NAMESPACE.into(),
        settings: ProfileSettings {
            managed: true,
            labels: vec![assign(location)],
            ..ProfileSettings::default()
        },
    };
    match command_done(bus, &command).await? {
        (LabelingItem::Profile(profile), Some(key)) => Ok((profile.id, key)),
        other => bail!("creating the profile made {other:?}"),
    }
}

fn assign(location: &Location) -> ProfileLabel {
    ProfileLabel {
        key: EDITED_KEY.into(),
        assignment: Some(location.href.clone()),
        restriction: None,
    }
}

fn app_name(deployment: usize) -> String {
    format!("app-{deployment:04}")
}

/// The namespace, carrying the profile's pairing key, and its deployments (the simulator's
/// controllers make their replica sets and pods); the pods and deployments every edit
/// relabels.
fn create_workloads(
    simulator: &Simulator,
    pods: usize,
    deployments: usize,
    pairing_key: &str,
) -> anyhow::Result<Relabelled> {
    simulator.apply(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "annotations": { "bulkhead.io/pairing-key": pairing_key },
        },
    }))?;
    for d in 0..deployments {
        let app = app_name(d);
        let replicas = PODS_PER_DEPLOYMENT.min(pods - d * PODS_PER_DEPLOYMENT);
        simulator.apply(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": app, "namespace": NAMESPACE, "labels": { "app": app } },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": app } },
                "template": {
                    "metadata": {
                        "labels": { "app": app },
                        "annotations": {
                            "bulkhead.io/app": app,
                            "bulkhead.io/env": ENV,
                            "bulkhead.io/role": ROLE,
                        },
                    },
                    "spec": { "containers": [{ "name": "app", "image": "registry.example/app:1.0" }] },
                },
            },
        }))?;
    }
    let uids = |kind: Kind| -> anyhow::Result<Vec<String>> {
        simulator
            .list(kind, Some(NAMESPACE))
            .iter()
            .map(|object| {
                object["metadata"]["uid"]
                    .as_str()
                    .map(str::to_owned)
                    .context("an object without uid")
            })
            .collect()
    };
    let relabelled = Relabelled {
        pods: uids(Kind::Pod)?,
        workloads: uids(Kind::Deployment)?,
    };
    ensure!(
        relabelled.pods.len() == pods,
        "the simulator runs {} pods of {pods}",
        relabelled.pods.len()
    );
    Ok(relabelled)
}

/// Sets the profile's `loc` to `location` and times it until the command is answered and until
/// the first entity's, every pod's and every entity's new labels are committed; then waits
/// until the stream is still, so that the edit's writes and appends are all counted.
async fn timed_edit(
    bus: &TypedBus,
    effective: &Mutex<Effective>,
    cluster: &PairedCluster,
    profile_id: &str,
    location: &Location,
    relabelled: &Relabelled,
) -> anyhow::Result<Edit> {
    let value = location.value;
    wait_quiet(effective).await;
    let writes_before = {
        let mut seen = effective.lock().unwrap();
        seen.take_appends();
        seen.writes
    };
    let command = LabelingCommand::UpdateProfile {
        cluster_id: cluster.id.clone(),
        profile_id: profile_id.to_owned(),
        name: None,
        managed: None,
        enforcement_mode: None,
        labels: Some(vec![assign(location)]),
    };
    let started = Instant::now();
    let reply = bus
        .request::<LabelingCommand, LabelingCommandReply>(
            &Subject::labeling_command(),
            &command,
            REQUEST_TIMEOUT,
        )
        .await?
        .message;
    let answered = started.elapsed();
    ensure!(
        matches!(reply, LabelingCommandReply::Done { .. }),
        "the profile edit: {reply:?}"
    );
    let all = wait_labelled(effective, &relabelled.all(), value, started, EDIT_LIMIT).await?;
    let pods = effective
        .lock()
        .unwrap()
        .all_committed(&relabelled.pods, value, LABEL_KEYS, started)
        .context("every pod was relabelled, then one was not")?;
    wait_quiet(effective).await;
    let mut seen = effective.lock().unwrap();
    Ok(Edit {
        answered,
        first: all.first - started,
        pods: pods.last - started,
        all: all.last - started,
        writes: seen.writes - writes_before,
        appends: seen.take_appends(),
    })
}

/// Waits until every one of `uids` has its labels committed, managed, with `location`, since
/// `since`; when the first and the last of them came.
async fn wait_labelled(
    effective: &Mutex<Effective>,
    uids: &[String],
    location: &str,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Span> {
    loop {
        {
            let seen = effective.lock().unwrap();
            if let Some(last) = seen.all_committed(uids, location, LABEL_KEYS, since) {
                return Ok(last);
            }
            if let Some(why) = &seen.stopped {
                bail!("stopped following the effective stream: {why}");
            }
        }
        ensure!(
            since.elapsed() < limit,
            "not every entity labelled with {EDITED_KEY}={location} within {limit:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until nothing new has been committed to the effective stream for [`QUIET`].
async fn wait_quiet(effective: &Mutex<Effective>) {
    let mut writes = effective.lock().unwrap().writes;
    let mut still_since = Instant::now();
    while still_since.elapsed() < QUIET {
        tokio::time::sleep(POLL).await;
        let now = effective.lock().unwrap().writes;
        if now != writes {
            writes = now;
            still_since = Instant::now();
        }
    }
}

/// The nearest-rank percentile of sorted `values`.
fn percentile<T: Copy + Default>(sorted: &[T], quantile: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Figures {
    pods: usize,
    deployments: usize,
    fed: Duration,
    memory_before: u64,
    memory_after: u64,
    entities: usize,
    by_kind: BTreeMap<EntityKind, usize>,
    entity_bytes: usize,
    edits: Vec<Edit>,
    floors: Vec<Floor>,
}

fn report(figures: &Figures) {
    let sorted = |mut durations: Vec<Duration>| {
        durations.sort_unstable();
        durations
    };
    let ours = |of: fn(&Edit) -> Duration| sorted(figures.edits.iter().map(of).collect());
    let floor = |of: fn(&Floor) -> Duration| sorted(figures.floors.iter().map(of).collect());
    let timings = [
        (
            "first entity's",
            ours(|e| e.first),
            floor(|f| f.first),
            "first append",
            None,
        ),
        (
            "every pod's",
            ours(|e| e.pods),
            floor(|f| f.all),
            "same appends",
            None,
        ),
        (
            "every entity's",
            ours(|e| e.all),
            floor(|f| f.all),
            "same appends",
            Some(TARGET_EDIT),
        ),
    ];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let per_entity =
        figures.memory_after.saturating_sub(figures.memory_before) as f64 / figures.entities as f64;

    let mut out = table(&[
        "measure",
        "Bulkhead",
        "floor",
        "vs floor",
        "target",
        "vs target",
    ]);
    for (name, quantile) in [("p50", 0.5), ("max", 1.0)] {
        for (which, ours, floors, floor_name, target) in &timings {
            let ours = percentile(ours, quantile);
            let floor = percentile(floors, quantile);
            out.add_row(vec![
                format!("profile edit → {which} new labels committed, {name}"),
                ms(ours),
                format!("{} (log alone, {floor_name})", ms(floor)),
                ratio(ours.as_secs_f64(), floor.as_secs_f64(), Goal::None),
                target.map_or_else(String::new, |t| format!("≤ {} ms", t.as_millis())),
                target.map_or_else(String::new, |t| {
                    ratio(ours.as_secs_f64(), t.as_secs_f64(), Goal::AtMostTheirs)
                }),
            ]);
        }
    }
    out.add_row(vec![
        "labeling memory per labelled entity".to_owned(),
        format!("{per_entity:.0} B"),
        format!(
            "{} B (an entity's effective labels, MessagePack)",
            figures.entity_bytes
        ),
        ratio(per_entity, figures.entity_bytes as f64, Goal::None),
        format!("≤ {TARGET_BYTES_PER_ENTITY:.0} B"),
        ratio(per_entity, TARGET_BYTES_PER_ENTITY, Goal::AtMostTheirs),
    ]);
    println!();
    println!("{out}");

    let edit = &figures.edits[0];
    let bytes: usize = edit
        .appends
        .iter()
        .flatten()
        .map(|event| event.data.len())
        .sum();
    let events: usize = edit.appends.iter().map(Vec::len).sum();
    let kinds = figures
        .by_kind
        .iter()
        .map(|(kind, count)| format!("{count} {kind:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "\n{} edits, each command answered (the profile committed and applied by labeling) \
         after {} at p50; the first wrote {} entity labels ({} pods, {} kube workloads \
         relabelled) in {} appends of {events} events, {:.2} MiB; entity labels written per \
         edit: {}",
        figures.edits.len(),
        ms(percentile(&ours(|e| e.answered), 0.5)),
        edit.writes,
        figures.pods,
        figures.deployments,
        edit.appends.len(),
        bytes as f64 / 1048576.0,
        figures
            .edits
            .iter()
            .map(|e| e.writes.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!(
        "labeling resident memory: {:.1} MiB before clusterlink, {:.1} MiB with {} entities \
         labelled ({kinds}); the feed (clusterlink start → every pod and workload labelled) took \
         {:.2} s; load average after: {}",
        figures.memory_before as f64 / 1048576.0,
        figures.memory_after as f64 / 1048576.0,
        figures.entities,
        figures.fed.as_secs_f64(),
        load_average(),
    );
}
