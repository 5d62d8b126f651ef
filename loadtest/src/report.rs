//! The printed figures: markdown tables (so that a run's output pastes into `docs/` as is),
//! rates and latencies in fixed units, and ratios marked against their targets.

use comfy_table::Table;
use comfy_table::presets::ASCII_MARKDOWN;

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header(header);
    table
}

/// Per second, rounded to a whole number.
pub fn rate(per_second: f64) -> String {
    format!("{per_second:.0}")
}

/// Microseconds shown as milliseconds.
pub fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// What a ratio of ours to theirs should be.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Ours at least theirs (throughput).
    AtLeastTheirs,
    /// Ours at most theirs (latency).
    AtMostTheirs,
    /// For reading only (a floor we cannot beat).
    None,
}

/// `ours / theirs`, with ✗ when it misses its goal.
pub fn ratio(ours: f64, theirs: f64, goal: Goal) -> String {
    if theirs <= 0.0 {
        return "n/a".into();
    }
    let r = ours / theirs;
    let missed = match goal {
        Goal::AtLeastTheirs => r < 1.0,
        Goal::AtMostTheirs => r > 1.0,
        Goal::None => false,
    };
    format!("{r:.2}{}", if missed { " ✗" } else { "" })
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine's cores and CPU model, as a run's output states them.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu})")
}
