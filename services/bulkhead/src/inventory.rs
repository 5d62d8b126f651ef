//! `bulkhead cluster ...` and the inventory lists (`workloads`, `container-workloads`,
//! `kubernetes-workloads`, `virtual-services`, `namespaces`), over the REST API.

use std::process::ExitCode;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::Output;
use crate::client::{Client, PageArgs, out, print, text, with_query};

#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// Container clusters: pair one (create), list, show, change, unpair (delete).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Workloads: the nodes of the container clusters.
    Workloads(ListArgs),
    /// Container workloads: pods on the pod network.
    ContainerWorkloads(ListArgs),
    /// Kubernetes workloads: Deployments, StatefulSets, DaemonSets, Jobs... and bare pods.
    KubernetesWorkloads(ListArgs),
    /// Virtual services: Kubernetes services and the backends behind them.
    VirtualServices(ListArgs),
    /// The namespaces of one container cluster.
    Namespaces(NamespacesArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Pair a new cluster: prints its id and token (shown this once) for clusterlink.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the clusters, with their clusterlink's state.
    List {
        /// Only names containing this.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one cluster, with its errors (e.g. duplicate machine ids).
    Get { id: String },
    /// Rename a cluster or change its description.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Unpair a cluster: forgets it and everything observed in it; its token stops working.
    Delete { id: String },
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only in this cluster (id).
    #[arg(long)]
    cluster: Option<String>,
    /// Only in this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Only on this node (name).
    #[arg(long)]
    node: Option<String>,
    /// Only names containing this (case-insensitive).
    #[arg(long)]
    name: Option<String>,
    /// Only what carries this Bulkhead label; repeat for all of several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
    label: Vec<(String, String)>,
    /// Only what carries every label of one of these lists (the API's `labels`), e.g.
    /// '[["/orgs/1/labels/1","/orgs/1/labels/2"],[{"key":"role","value":"db"}]]'; each list also
    /// needs the --label ones.
    #[arg(long, value_name = "JSON")]
    labels: Option<String>,
    #[command(flatten)]
    page: PageArgs,
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .filter(|(key, value)| !key.is_empty() && !value.is_empty())
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{arg:?} is not KEY=VALUE"))
}

/// The API's `labels` parameter from `--labels` and `--label`: each of the lists needs every
/// `--label` too (without `--labels`, one list of them).
fn labels_parameter(
    labels: Option<&str>,
    label: &[(String, String)],
) -> anyhow::Result<Option<String>> {
    let required: Vec<Value> = label
        .iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect();
    let mut lists: Vec<Vec<Value>> = match labels {
        Some(labels) => serde_json::from_str(labels).context(
            "--labels must be a JSON list of lists of labels, e.g. [[\"/orgs/1/labels/1\"]]",
        )?,
        None if required.is_empty() => return Ok(None),
        None => vec![Vec::new()],
    };
    for list in &mut lists {
        list.extend(required.iter().cloned());
    }
    Ok(Some(Value::from(lists).to_string()))
}

#[derive(Debug, clap::Args)]
pub struct NamespacesArgs {
    /// The cluster (id).
    #[arg(long)]
    cluster: String,
    /// Only names containing this.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    page: PageArgs,
}

const CLUSTER_COLUMNS: &[(&str, &str)] = &[
    ("ID", "cluster_id"),
    ("NAME", "name"),
    ("ONLINE", "online"),
    ("SYNC", "sync_state"),
    ("MODE", "cluster_mode"),
    ("CLUSTERLINK", "clusterlink_version"),
    ("KUBERNETES", "kubernetes_version"),
    ("NODES", "nodes"),
    ("PODS", "pods"),
    ("ERRORS", "errors"),
];

pub async fn run(
    client: &Client,
    output: Output,
    command: InventoryCommand,
) -> anyhow::Result<ExitCode> {
    let (path, args, columns): (&str, &ListArgs, &[(&str, &str)]) = match &command {
        InventoryCommand::Cluster(command) => return cluster(client, output, command).await,
        InventoryCommand::Namespaces(args) => {
            let path = format!("/orgs/1/container_clusters/{}/namespaces", args.cluster);
            let query = with_query(&path, &[("name", args.name.as_deref())], &args.page);
            let columns = [
                ("NAME", "name"),
                ("CLUSTER", "cluster"),
                ("LABELS", "kubernetes_labels"),
            ];
            list(client, output, &query, &columns).await?;
            return Ok(ExitCode::SUCCESS);
        }
        InventoryCommand::Workloads(args) => (
            "/orgs/1/workloads",
            args,
            &[
                ("NAME", "name"),
                ("CLUSTER", "cluster"),
                ("MACHINE ID", "machine_id"),
                ("DUPLICATE", "duplicate_machine_id"),
                ("ADDRESSES", "addresses"),
                ("POD CIDRS", "pod_cidrs"),
                ("ROLES", "roles"),
                ("LABELS", "labels"),
            ],
        ),
        InventoryCommand::ContainerWorkloads(args) => (
            "/orgs/1/container_workloads",
            args,
            &[
                ("NAMESPACE", "namespace"),
                ("NAME", "name"),
                ("CLUSTER", "cluster"),
                ("NODE", "node_name"),
                ("IPS", "ips"),
                ("PHASE", "phase"),
                ("LABELS", "labels"),
            ],
        ),
        InventoryCommand::KubernetesWorkloads(args) => (
            "/orgs/1/kubernetes_workloads",
            args,
            &[
                ("NAMESPACE", "namespace"),
                ("KIND", "kind"),
                ("NAME", "name"),
                ("CLUSTER", "cluster"),
                ("PODS", "pods"),
                ("IPS", "ips"),
                ("LABELS", "labels"),
            ],
        ),
        InventoryCommand::VirtualServices(args) => (
            "/orgs/1/virtual_services",
            args,
            &[
                ("NAMESPACE", "namespace"),
                ("NAME", "name"),
                ("CLUSTER", "cluster"),
                ("TYPE", "service_type"),
                ("CLUSTER IPS", "cluster_ips"),
                ("BACKENDS", "backends"),
                ("LABELS", "labels"),
            ],
        ),
    };
    let labels = labels_parameter(args.labels.as_deref(), &args.label)?;
    let filters = [
        ("container_cluster", args.cluster.as_deref()),
        ("namespace", args.namespace.as_deref()),
        ("node", args.node.as_deref()),
        ("name", args.name.as_deref()),
        ("labels", labels.as_deref()),
    ];
    list(
        client,
        output,
        &with_query(path, &filters, &args.page),
        columns,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn cluster(
    client: &Client,
    output: Output,
    command: &ClusterCommand,
) -> anyhow::Result<ExitCode> {
    let one = |id: &str| format!("/orgs/1/container_clusters/{id}");
    match command {
        ClusterCommand::Create { name, description } => {
            let body = json!({ "name": name, "description": description });
            let created = client
                .call(Method::POST, "/orgs/1/container_clusters", Some(&body))
                .await?;
            print(
                output,
                &created,
                std::slice::from_ref(&created),
                CLUSTER_COLUMNS,
            )?;
            if output == Output::Table {
                out!("cluster id:    {}", text(&created["cluster_id"]));
                out!(
                    "cluster token: {}   (shown this once: give it to clusterlink now)",
                    text(&created["container_cluster_token"])
                );
            }
        }
        ClusterCommand::List { name, page } => {
            let query = with_query(
                "/orgs/1/container_clusters",
                &[("name", name.as_deref())],
                page,
            );
            list(client, output, &query, CLUSTER_COLUMNS).await?;
        }
        ClusterCommand::Get { id } => show(client, output, &one(id)).await?,
        ClusterCommand::Update {
            id,
            name,
            description,
        } => {
            let body = json!({ "name": name, "description": description });
            client.call(Method::PUT, &one(id), Some(&body)).await?;
            show(client, output, &one(id)).await?;
        }
        ClusterCommand::Delete { id } => {
            client.call(Method::DELETE, &one(id), None).await?;
            if output == Output::Table {
                out!("deleted container cluster {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(client: &Client, output: Output, path: &str) -> anyhow::Result<()> {
    let cluster = client.call(Method::GET, path, None).await?;
    print(
        output,
        &cluster,
        std::slice::from_ref(&cluster),
        CLUSTER_COLUMNS,
    )?;
    if output == Output::Table {
        for error in cluster["errors"].as_array().into_iter().flatten() {
            out!(
                "error: {} {} on nodes {}",
                text(&error["error_type"]),
                text(&error["machine_id"]),
                joined(&error["nodes"])
            );
        }
    }
    Ok(())
}

async fn list(
    client: &Client,
    output: Output,
    path_and_query: &str,
    columns: &[(&str, &str)],
) -> anyhow::Result<()> {
    let answer = client.call(Method::GET, path_and_query, None).await?;
    let rows: Vec<Value> = answer
        .as_array()
        .into_iter()
        .flatten()
        .map(table_row)
        .collect();
    print(output, &answer, &rows, columns)
}

/// A resource as one table row: its cluster by name, its Bulkhead labels as `key=value`, lists
/// joined, nested lists counted.
fn table_row(resource: &Value) -> Value {
    let mut row = resource.clone();
    if let Some(object) = row.as_object_mut() {
        for (field, value) in object.iter_mut() {
            if let Some(items) = value.as_array() {
                *value = if field == "labels" {
                    key_values(items).into()
                } else if items.iter().all(|i| !i.is_object() && !i.is_array()) {
                    joined(value).into()
                } else {
                    items.len().into()
                };
            } else if value.is_object() && value.get("href").is_none() {
                *value = joined_map(value).into();
            }
        }
        object.insert(
            "cluster".into(),
            resource["container_cluster"]["name"].clone(),
        );
    }
    row
}

fn joined(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bulkhead labels, `[{key, value, ...}]`, as `key=value, ...`.
fn key_values(labels: &[Value]) -> String {
    labels
        .iter()
        .map(|label| format!("{}={}", text(&label["key"]), text(&label["value"])))
        .collect::<Vec<_>>()
        .join(", ")
}

fn joined_map(map: &Value) -> String {
    map.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_cluster_names_labels_and_flat_lists() {
        let resource = json!({
            "name": "web",
            "ips": ["10.0.0.1", "10.0.0.2"],
            "backends": [{"ready": true}],
            "kubernetes_labels": {"app": "web"},
            "labels": [
                {"href": "/orgs/1/labels/3", "key": "env", "value": "prod", "source": "profile"},
                {"href": "/orgs/1/labels/1", "key": "role", "value": "web", "source": "profile"},
            ],
            "container_cluster": {"href": "/orgs/1/container_clusters/c", "name": "prod"},
        });
        let row = table_row(&resource);
        assert_eq!(row["cluster"], "prod");
        assert_eq!(row["ips"], "10.0.0.1, 10.0.0.2");
        assert_eq!(row["backends"], 1);
        assert_eq!(row["kubernetes_labels"], "app=web");
        assert_eq!(row["labels"], "env=prod, role=web");
    }

    #[test]
    fn label_flags_make_the_labels_parameter() {
        let role = ("role".to_owned(), "web".to_owned());
        let env = ("env".to_owned(), "prod".to_owned());
        assert_eq!(labels_parameter(None, &[]).unwrap(), None);
        let all_of = labels_parameter(None, &[role.clone(), env])
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&all_of).unwrap(),
            json!([[{"key": "role", "value": "web"}, {"key": "env", "value": "prod"}]])
        );
        let lists = r#"[["/orgs/1/labels/1"],["/orgs/1/labels/2"]]"#;
        let both = labels_parameter(Some(lists), &[role]).unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&both).unwrap(),
            json!([
                ["/orgs/1/labels/1", {"key": "role", "value": "web"}],
                ["/orgs/1/labels/2", {"key": "role", "value": "web"}],
            ]),
            "each list needs the --label ones too"
        );
        assert!(labels_parameter(Some("role=web"), &[]).is_err());
        assert_eq!(key_value("role=web"), Ok(("role".into(), "web".into())));
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(key_value("role").is_err() && key_value("=web").is_err());
    }
}
