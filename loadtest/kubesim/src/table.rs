//! Server-side printing (`Accept: application/json;as=Table;...`), which `kubectl get` asks
//! for: the columns of the real API server's printers for the kinds people look at (`-o wide`
//! adds the priority-1 ones), name and age for the others.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::{kinds::Kind, store::Obj};

#[derive(Clone, Copy)]
struct Column {
    name: &'static str,
    /// 0: always shown; 1: with `-o wide`.
    priority: u8,
    cell: fn(&Value) -> Value,
}

const fn col(name: &'static str, priority: u8, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        priority,
        cell,
    }
}

/// Whether the client asked for a Table.
pub(crate) fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

pub(crate) fn render(kind: Kind, rv: u64, next: Option<String>, items: &[Arc<Obj>]) -> Value {
    let columns: Vec<&Column> = std::iter::once(&NAME).chain(columns(kind)).collect();
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| json!({ "name": c.name, "type": "string", "format": if c.name == "Name" { "name" } else { "" }, "description": "", "priority": c.priority }))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(&obj.value)).collect();
            let object = json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.value["metadata"] });
            json!({ "cells": cells, "object": object })
        })
        .collect();
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": definitions, "rows": rows })
}

const NAME: Column = col("Name", 0, |v| v["metadata"]["name"].clone());
const AGE: Column = col("Age", 0, |v| {
    json!(age(&v["metadata"]["creationTimestamp"]))
});

fn columns(kind: Kind) -> &'static [Column] {
    match kind {
        Kind::Pod => &POD,
        Kind::Node => &NODE,
        Kind::Namespace => &NAMESPACE,
        Kind::Service => &SERVICE,
        Kind::Deployment => &DEPLOYMENT,
        Kind::ReplicaSet | Kind::ReplicationController => &REPLICA_SET,
        Kind::StatefulSet => &STATEFUL_SET,
        Kind::DaemonSet => &DAEMON_SET,
        Kind::EndpointSlice => &ENDPOINT_SLICE,
        Kind::Job | Kind::CronJob | Kind::Event | Kind::LabelMap => &[AGE],
        Kind::CustomResourceDefinition => &CRD,
    }
}

static POD: [Column; 6] = [
    col("Ready", 0, |v| {
        let statuses = v["status"]["containerStatuses"].as_array();
        let ready = statuses
            .into_iter()
            .flatten()
            .filter(|s| s["ready"] == true)
            .count();
        let total = v["spec"]["containers"].as_array().map_or(0, Vec::len);
        json!(format!("{ready}/{total}"))
    }),
    col("Status", 0, |v| v["status"]["phase"].clone()),
    col("Restarts", 0, |v| {
        let statuses = v["status"]["containerStatuses"].as_array();
        json!(
            statuses
                .into_iter()
                .flatten()
                .filter_map(|s| s["restartCount"].as_i64())
                .sum::<i64>()
        )
    }),
    AGE,
    col("IP", 1, |v| none_if_null(&v["status"]["podIP"])),
    col("Node", 1, |v| none_if_null(&v["spec"]["nodeName"])),
];

static NODE: [Column; 7] = [
    col("Status", 0, |v| {
        let ready = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        json!(if ready { "Ready" } else { "NotReady" })
    }),
    col("Roles", 0, |v| {
        let labels = v["metadata"]["labels"].as_object();
        let roles: Vec<&str> = labels
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
            .collect();
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        })
    }),
    AGE,
    col("Version", 0, |v| {
        v["status"]["nodeInfo"]["kubeletVersion"].clone()
    }),
    col("Internal-IP", 1, |v| {
        let addresses = v["status"]["addresses"].as_array();
        let ip = addresses
            .into_iter()
            .flatten()
            .find(|a| a["type"] == "InternalIP")
            .map(|a| a["address"].clone());
        none_if_null(&ip.unwrap_or_default())
    }),
    col("OS-Image", 1, |v| {
        v["status"]["nodeInfo"]["osImage"].clone()
    }),
    col("Container-Runtime", 1, |v| {
        v["status"]["nodeInfo"]["containerRuntimeVersion"].clone()
    }),
];

static CRD: [Column; 1] = [col("Created At", 0, |v| {
    v["metadata"]["creationTimestamp"].clone()
})];

static NAMESPACE: [Column; 2] = [col("Status", 0, |v| v["status"]["phase"].clone()), AGE];

static SERVICE: [Column; 6] = [
    col("Type", 0, |v| v["spec"]["type"].clone()),
    col("Cluster-IP", 0, |v| none_if_null(&v["spec"]["clusterIP"])),
    col("External-IP", 0, |_| json!("<none>")),
    col("Port(s)", 0, |v| {
        let ports = v["spec"]["ports"].as_array();
        let ports: Vec<String> = ports
            .into_iter()
            .flatten()
            .map(|p| {
                let protocol = p["protocol"].as_str().unwrap_or("TCP");
                match p["nodePort"].as_i64() {
                    Some(node_port) => format!("{}:{node_port}/{protocol}", p["port"]),
                    None => format!("{}/{protocol}", p["port"]),
                }
            })
            .collect();
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        })
    }),
    AGE,
    col("Selector", 1, |v| {
        let selector = crate::selector::to_query(&v["spec"]["selector"]);
        json!(if selector.is_empty() {
            "<none>".to_string()
        } else {
            selector
        })
    }),
];

static DEPLOYMENT: [Column; 6] = [
    col("Ready", 0, |v| {
        json!(format!(
            "{}/{}",
            int(&v["status"]["readyReplicas"]),
            int(&v["spec"]["replicas"])
        ))
    }),
    col("Up-to-date", 0, |v| {
        json!(int(&v["status"]["updatedReplicas"]))
    }),
    col("Available", 0, |v| {
        json!(int(&v["status"]["availableReplicas"]))
    }),
    AGE,
    IMAGES,
    SELECTOR,
];

static REPLICA_SET: [Column; 6] = [
    col("Desired", 0, |v| json!(int(&v["spec"]["replicas"]))),
    col("Current", 0, |v| json!(int(&v["status"]["replicas"]))),
    col("Ready", 0, |v| json!(int(&v["status"]["readyReplicas"]))),
    AGE,
    IMAGES,
    SELECTOR,
];

static STATEFUL_SET: [Column; 3] = [
    col("Ready", 0, |v| {
        json!(format!(
            "{}/{}",
            int(&v["status"]["readyReplicas"]),
            int(&v["spec"]["replicas"])
        ))
    }),
    AGE,
    IMAGES,
];

static DAEMON_SET: [Column; 6] = [
    col("Desired", 0, |v| {
        json!(int(&v["status"]["desiredNumberScheduled"]))
    }),
    col("Current", 0, |v| {
        json!(int(&v["status"]["currentNumberScheduled"]))
    }),
    col("Ready", 0, |v| json!(int(&v["status"]["numberReady"]))),
    col("Available", 0, |v| {
        json!(int(&v["status"]["numberAvailable"]))
    }),
    AGE,
    IMAGES,
];

static ENDPOINT_SLICE: [Column; 4] = [
    col("AddressType", 0, |v| v["addressType"].clone()),
    col("Ports", 0, |v| {
        let ports = v["ports"].as_array();
        let ports: Vec<String> = ports
            .into_iter()
            .flatten()
            .map(|p| p["port"].to_string())
            .collect();
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        })
    }),
    col("Endpoints", 0, |v| {
        let endpoints = v["endpoints"].as_array();
        let addresses: Vec<&str> = endpoints
            .into_iter()
            .flatten()
            .flat_map(|e| {
                e["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
            })
            .collect();
        json!(match addresses.len() {
            0 => "<unset>".to_string(),
            n if n > 3 => format!("{} + {} more...", addresses[..3].join(","), n - 3),
            _ => addresses.join(","),
        })
    }),
    AGE,
];

const IMAGES: Column = col("Images", 1, |v| {
    let containers = v["spec"]["template"]["spec"]["containers"].as_array();
    json!(
        containers
            .into_iter()
            .flatten()
            .filter_map(|c| c["image"].as_str())
            .collect::<Vec<_>>()
            .join(",")
    )
});
const SELECTOR: Column = col("Selector", 1, |v| {
    json!(crate::selector::to_query(&v["spec"]["selector"]))
});

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn none_if_null(v: &Value) -> Value {
    match v {
        Value::String(s) if !s.is_empty() => v.clone(),
        _ => json!("<none>"),
    }
}

/// An age as kubectl prints it: `45s`, `4m30s`, `25m`, `3h20m`, `26h`, `5d3h`, `40d`.
fn age(created: &Value) -> String {
    let Some(created) = created
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().as_second() - created.as_second())
}

fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        for (seconds, want) in [
            (5, "5s"),
            (119, "119s"),
            (270, "4m30s"),
            (600, "10m"),
            (1500, "25m"),
            (12_000, "3h20m"),
            (93_600, "26h"),
            (442_800, "5d3h"),
            (3_456_000, "40d"),
        ] {
            assert_eq!(human_duration(seconds), want);
        }
    }

    #[test]
    fn tables_have_a_cell_per_column() {
        let pod = Obj::for_test(json!({
            "metadata": { "name": "p", "creationTimestamp": "2020-01-01T00:00:00Z" },
            "spec": { "containers": [{ "name": "c" }], "nodeName": "n" },
            "status": { "phase": "Running", "podIP": "10.244.0.2", "containerStatuses": [{ "ready": true, "restartCount": 2 }] },
        }));
        let table = render(Kind::Pod, 9, None, &[pod]);
        assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 7);
        assert_eq!(
            table["rows"][0]["cells"],
            json!([
                "p",
                "1/1",
                "Running",
                2,
                table["rows"][0]["cells"][4],
                "10.244.0.2",
                "n"
            ])
        );
    }
}
