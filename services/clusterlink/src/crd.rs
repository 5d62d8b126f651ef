//! Bulkhead's custom resource: `LabelMap` (`labelmaps.bulkhead.io/v1`, cluster-scoped), how a
//! cluster's Kubernetes labels become Bulkhead labels. The types give clusterlink its typed
//! client; their derived CustomResourceDefinition is `deploy/crds/labelmap.yaml` (a test keeps
//! the two equal).
//!
//! The schema checks types only: what makes an item unusable (an empty key, a `fromKey` listed
//! twice) is for clusterlink to leave out item by item (see [`crate::convert`]), so that one bad
//! item costs that item, not the whole map, and an older CRD cannot let through what the
//! conversion would choke on.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Maps the labels of nodes and of workloads to Bulkhead labels. A cluster may have several
/// LabelMaps: they are merged in name order.
#[derive(
    CustomResource, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "bulkhead.io",
    version = "v1",
    kind = "LabelMap",
    plural = "labelmaps",
    doc = "How a cluster's Kubernetes labels become Bulkhead labels"
)]
#[serde(rename_all = "camelCase")]
pub struct LabelMapSpec {
    /// Rules applied to the labels of nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_label_map: Vec<LabelMapRule>,
    /// Rules applied to the labels of pods and their workloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_label_map: Vec<LabelMapRule>,
}

/// The Kubernetes label `fromKey` gives the Bulkhead label `toKey`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelMapRule {
    /// The Kubernetes label key to read, e.g. `topology.kubernetes.io/zone`.
    // absent reads as empty, which the conversion drops with a warning: see the module's doc
    #[serde(default)]
    pub from_key: String,
    /// The Bulkhead label key to set, e.g. `loc`.
    #[serde(default)]
    pub to_key: String,
    /// Translations of values. Absent: every value is taken as it is; otherwise only the
    /// values listed map, and the others leave the rule out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_map: Vec<ValueRule>,
    /// Whether a value naming no existing Bulkhead label may create that label.
    #[serde(default)]
    pub allow_create: bool,
}

/// The Kubernetes label value `from` becomes the Bulkhead label value `to`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ValueRule {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kube::CustomResourceExt;

    use super::*;

    const HEADER: &str = "\
# The LabelMap custom resource definition: `kubectl apply -f` it before clusterlink starts (or at
# any time: clusterlink looks for it again every minute). Generated from
# services/clusterlink/src/crd.rs: `BULKHEAD_BLESS=1 cargo test -p bulkhead-clusterlink crd`.
";

    #[test]
    fn the_deployed_crd_is_the_derived_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds/labelmap.yaml");
        let expected = format!(
            "{HEADER}{}",
            serde_saphyr::to_string(&LabelMap::crd()).unwrap()
        );
        if std::env::var_os("BULKHEAD_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &expected).unwrap();
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            actual == expected,
            "{} is stale: run `BULKHEAD_BLESS=1 cargo test -p bulkhead-clusterlink crd` and review the diff",
            path.display()
        );
    }
}
