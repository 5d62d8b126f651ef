//! `bulkhead`: the one binary.
//!
//! ```text
//! bulkhead up                 whole control plane, one process, in-process bus, data in ./bulkhead-data
//! bulkhead serve <service>    one service against NATS (compose, Kubernetes)
//! bulkhead <anything else>    the CLI, over the REST API
//! ```

mod cli;
mod client;
mod demo;
mod inventory;
mod labeling;
mod log;
mod serve;
mod supervisor;
mod up;

use clap::Parser;

/// jemalloc rather than glibc's malloc: its background thread gives freed pages back to the OS,
/// so a service's resident memory follows what it holds (glibc keeps large freed buffers, such
/// as an encoded checkpoint, in its heap), and it fragments less under many small allocations.
/// Its options are built in (`.cargo/config.toml`): freed pages go back after about a second
/// rather than ten, so a large transient buffer is not counted against a service for long.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
