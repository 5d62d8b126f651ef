//! `bulkhead log ...`: the event log's status, events and membership, over the REST API.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::Output;
use crate::client::{Client, out, print, text};

#[derive(Debug, clap::Subcommand)]
pub enum LogCommand {
    /// Leader, term, commit index, last sequence number, members and replication lag.
    Status,
    /// Committed events in log order (read-only).
    Events {
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// At most this many events (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Add a replica as a learner (it catches up, then can be promoted).
    AddLearner {
        node_id: u64,
        /// Its Raft listener, host:port, as the other replicas reach it.
        addr: String,
    },
    /// Make a learner a voter.
    Promote { node_id: u64 },
    /// Remove a replica from the log.
    Remove { node_id: u64 },
}

pub async fn run(client: &Client, output: Output, command: LogCommand) -> anyhow::Result<ExitCode> {
    match command {
        LogCommand::Status => {
            let status = client.call(Method::GET, "/log/status", None).await?;
            print_status(output, &status)?;
        }
        LogCommand::Events { from, limit } => {
            let page = client
                .call(
                    Method::GET,
                    &format!("/log/events?from={from}&limit={limit}"),
                    None,
                )
                .await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            print(
                output,
                &page,
                &events,
                &[
                    ("SEQ", "seq"),
                    ("STREAM", "stream"),
                    ("VERSION", "stream_version"),
                    ("TYPE", "event_type"),
                    ("COMMITTED AT (ms)", "committed_at_ms"),
                ],
            )?;
            if output == Output::Table {
                out!("last seq: {}", text(&page["last_seq"]));
            }
        }
        LogCommand::AddLearner { node_id, addr } => {
            let body = json!({ "node_id": node_id, "addr": addr });
            print_membership(
                output,
                &client
                    .call(Method::POST, "/log/members", Some(&body))
                    .await?,
            )?;
        }
        LogCommand::Promote { node_id } => {
            print_membership(
                output,
                &client
                    .call(
                        Method::POST,
                        &format!("/log/members/{node_id}/promote"),
                        None,
                    )
                    .await?,
            )?;
        }
        LogCommand::Remove { node_id } => {
            print_membership(
                output,
                &client
                    .call(Method::DELETE, &format!("/log/members/{node_id}"), None)
                    .await?,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(output: Output, status: &Value) -> anyhow::Result<()> {
    let fields = [
        ("node", "node_id"),
        ("role", "role"),
        ("leader", "leader"),
        ("term", "term"),
        ("commit index", "commit_index"),
        ("last applied", "last_applied"),
        ("last seq", "last_seq"),
        ("snapshot index", "snapshot_index"),
    ];
    let rows: Vec<Value> = fields
        .iter()
        .map(|(name, key)| json!({ "field": name, "value": status[*key] }))
        .collect();
    print(
        output,
        status,
        &rows,
        &[("FIELD", "field"), ("VALUE", "value")],
    )?;
    if output == Output::Table {
        print_membership(output, status)?;
        let replication = status["replication"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !replication.is_empty() {
            print(
                output,
                status,
                &replication,
                &[
                    ("FOLLOWER", "node_id"),
                    ("MATCHED", "matched_index"),
                    ("LAG", "lag"),
                ],
            )?;
        }
    }
    Ok(())
}

fn print_membership(output: Output, membership: &Value) -> anyhow::Result<()> {
    let role_rows = |key: &str, role: &str| -> Vec<Value> {
        membership[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| json!({ "node_id": m["node_id"], "addr": m["addr"], "role": role }))
            .collect()
    };
    let mut rows = role_rows("voters", "voter");
    rows.extend(role_rows("learners", "learner"));
    print(
        output,
        membership,
        &rows,
        &[
            ("NODE", "node_id"),
            ("ADDRESS", "addr"),
            ("MEMBERSHIP", "role"),
        ],
    )
}
