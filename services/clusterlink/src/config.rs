//! clusterlink's settings. Names follow the reference Helm values where one exists
//! (`cluster_id`, `cluster_token`, `clusterMode`, `networkType`, `verbosity`); the control-plane
//! address (`pce_url`) is the NATS URL every `bulkhead serve` takes.

use std::path::PathBuf;
use std::time::Duration;

use bulkhead_runtime::config::Flags;
use bulkhead_schema::messages::inventory::ClusterCredentials;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Serialize};

use crate::error::ClusterlinkError;

/// How inventory manages the cluster's pods (Helm `clusterMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// Every pod is a pod workload.
    #[default]
    Legacy,
    /// Pods belong to their kube workload; clusterlink keeps the cluster-local store.
    Clas,
}

/// How pods are addressed (Helm `networkType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    /// Pods on an overlay network, behind their node's address.
    #[default]
    Overlay,
    /// Pod addresses routable outside the cluster (Azure CNI, Amazon VPC CNI).
    Flat,
}

impl ClusterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::Legacy => "legacy",
            ClusterMode::Clas => "clas",
        }
    }
}

impl NetworkType {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Overlay => "overlay",
            NetworkType::Flat => "flat",
        }
    }
}

/// Every setting of one clusterlink, from the `[clusterlink]` table of the config file,
/// `BULKHEAD_CLUSTERLINK__*` variables or [`ClusterlinkArgs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterlinkConfig {
    /// The cluster's id, as `bulkhead cluster create` printed it.
    pub cluster_id: String,
    /// The cluster's token. Set this or `cluster_token_file`.
    pub cluster_token: Option<String>,
    /// A file holding the token (a mounted Secret), surrounding whitespace ignored.
    pub cluster_token_file: Option<PathBuf>,
    pub cluster_mode: ClusterMode,
    pub network_type: NetworkType,
    /// A kubeconfig to reach the cluster with; unset: the in-cluster service account, else
    /// `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Most observations in one report (an event-log append takes at most 1,000 events).
    pub report_batch_size: usize,
    /// How long the first observation of a report waits for others to join it. Short: while a
    /// report awaits its ack, what arrives queues for the next one, which batches under load.
    pub report_linger_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// How long a request to inventory waits for its answer before it is sent again.
    pub request_timeout_ms: u64,
    /// The longest pause between retries, and the pause after a rejection.
    pub retry_max_ms: u64,
    /// How often a kind the API server does not serve (the LabelMap CRD not installed yet) is
    /// looked for again. Rarely: it changes when someone installs the CRD.
    pub absent_kind_retry_ms: u64,
    /// 0: lifecycle and problems; 1: also every report; 2: also every observation.
    pub verbosity: u8,
}

impl Default for ClusterlinkConfig {
    fn default() -> Self {
        ClusterlinkConfig {
            cluster_id: String::new(),
            cluster_token: None,
            cluster_token_file: None,
            cluster_mode: ClusterMode::default(),
            network_type: NetworkType::default(),
            kubeconfig: None,
            report_batch_size: 500,
            report_linger_ms: 5,
            heartbeat_interval_ms: 10_000,
            request_timeout_ms: 10_000,
            retry_max_ms: 10_000,
            absent_kind_retry_ms: 60_000,
            verbosity: 0,
        }
    }
}

const MAX_BATCH: usize = 1_000;
const MAX_LINGER_MS: u64 = 10_000;
const MIN_HEARTBEAT_MS: u64 = 100;
const MAX_VERBOSITY: u8 = 2;

fn invalid(field: &'static str, reason: impl Into<String>) -> ClusterlinkError {
    ClusterlinkError::Config {
        field,
        reason: reason.into(),
    }
}

impl ClusterlinkConfig {
    /// Checks every setting and returns the credentials to present (reading the token file).
    pub fn validate(&self) -> Result<ClusterCredentials, ClusterlinkError> {
        let id = &self.cluster_id;
        if id.is_empty() {
            return Err(invalid("cluster_id", "must be set"));
        }
        // the id is a token of the inventory subjects
        if id
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>'))
        {
            return Err(invalid(
                "cluster_id",
                format!("{id:?} may not contain whitespace, '.', '*' or '>'"),
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.report_batch_size) {
            return Err(invalid(
                "report_batch_size",
                format!(
                    "{} is not between 1 and {MAX_BATCH}",
                    self.report_batch_size
                ),
            ));
        }
        if self.report_linger_ms > MAX_LINGER_MS {
            return Err(invalid(
                "report_linger_ms",
                format!("{} is more than {MAX_LINGER_MS}", self.report_linger_ms),
            ));
        }
        if self.heartbeat_interval_ms < MIN_HEARTBEAT_MS {
            return Err(invalid(
                "heartbeat_interval_ms",
                format!(
                    "{} is less than {MIN_HEARTBEAT_MS}",
                    self.heartbeat_interval_ms
                ),
            ));
        }
        for (field, value) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("retry_max_ms", self.retry_max_ms),
            ("absent_kind_retry_ms", self.absent_kind_retry_ms),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be more than 0"));
            }
        }
        if self.verbosity > MAX_VERBOSITY {
            return Err(invalid(
                "verbosity",
                format!("{} is not between 0 and {MAX_VERBOSITY}", self.verbosity),
            ));
        }
        Ok(ClusterCredentials {
            cluster_id: id.clone(),
            token: self.token()?,
        })
    }

    fn token(&self) -> Result<String, ClusterlinkError> {
        let token = match (&self.cluster_token, &self.cluster_token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "cluster_token",
                    "set either cluster_token or cluster_token_file, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "cluster_token",
                    "set cluster_token or cluster_token_file",
                ));
            }
            (Some(token), None) => token.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| ClusterlinkError::TokenFile {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
        };
        if token.is_empty() {
            return Err(invalid("cluster_token", "is empty"));
        }
        Ok(token)
    }

    /// A client for the cluster: from `kubeconfig` when set, else inferred (in-cluster, then
    /// the default kubeconfig).
    pub async fn kube_client(&self) -> Result<kube::Client, ClusterlinkError> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let loaded = async {
                    let kubeconfig = Kubeconfig::read_from(path)?;
                    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                };
                loaded
                    .await
                    .map_err(|source| ClusterlinkError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?
            }
            None => kube::Config::infer().await?,
        };
        Ok(kube::Client::try_from(config)?)
    }

    pub(crate) fn report_linger(&self) -> Duration {
        Duration::from_millis(self.report_linger_ms)
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }

    pub(crate) fn absent_kind_retry(&self) -> Duration {
        Duration::from_millis(self.absent_kind_retry_ms)
    }
}

/// The flags of `bulkhead serve clusterlink`; each overrides the file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterlinkArgs {
    /// The cluster's id, from `bulkhead cluster create`.
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// The cluster's token. Other local users can read command lines: prefer
    /// --cluster-token-file or BULKHEAD_CLUSTERLINK__CLUSTER_TOKEN.
    #[arg(long)]
    pub cluster_token: Option<String>,
    /// A file holding the cluster's token.
    #[arg(long)]
    pub cluster_token_file: Option<PathBuf>,
    /// How inventory manages the cluster's pods [default: legacy].
    #[arg(long, value_enum)]
    pub cluster_mode: Option<ClusterMode>,
    /// How pods are addressed [default: overlay].
    #[arg(long, value_enum)]
    pub network_type: Option<NetworkType>,
    /// The kubeconfig to reach the cluster with [default: in-cluster, else $KUBECONFIG or
    /// ~/.kube/config].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Most observations in one report [default: 500].
    #[arg(long)]
    pub report_batch_size: Option<usize>,
    /// How long a report waits for more observations, in ms [default: 5].
    #[arg(long)]
    pub report_linger_ms: Option<u64>,
    /// Interval of heartbeats to inventory, in ms [default: 10000].
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// 0: lifecycle and problems; 1: also every report; 2: also every observation [default: 0].
    #[arg(long)]
    pub verbosity: Option<u8>,
}

impl ClusterlinkArgs {
    /// Adds the flags given to `flags` under `section` (the config table holding a
    /// [`ClusterlinkConfig`], e.g. `clusterlink`).
    pub fn flags(self, flags: Flags, section: &str) -> Flags {
        let key = |field: &str| format!("{section}.{field}");
        flags
            .set(&key("cluster_id"), self.cluster_id)
            .set(&key("cluster_token"), self.cluster_token)
            .set(&key("cluster_token_file"), self.cluster_token_file)
            .set(&key("cluster_mode"), self.cluster_mode)
            .set(&key("network_type"), self.network_type)
            .set(&key("kubeconfig"), self.kubeconfig)
            .set(&key("report_batch_size"), self.report_batch_size)
            .set(&key("report_linger_ms"), self.report_linger_ms)
            .set(&key("heartbeat_interval_ms"), self.heartbeat_interval_ms)
            .set(&key("verbosity"), self.verbosity)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn valid() -> ClusterlinkConfig {
        ClusterlinkConfig {
            cluster_id: "c1".into(),
            cluster_token: Some("secret".into()),
            ..ClusterlinkConfig::default()
        }
    }

    fn field_of(config: &ClusterlinkConfig) -> &'static str {
        match config.validate() {
            Err(ClusterlinkError::Config { field, .. }) => field,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_config_yields_the_credentials() {
        assert_eq!(
            valid().validate().unwrap(),
            ClusterCredentials {
                cluster_id: "c1".into(),
                token: "secret".into(),
            }
        );
    }

    #[test]
    fn invalid_settings_name_the_field() {
        type Breakage = fn(&mut ClusterlinkConfig);
        let cases: [(&str, Breakage); 11] = [
            ("cluster_id", |c| c.cluster_id.clear()),
            ("cluster_id", |c| c.cluster_id = "a.b".into()),
            ("cluster_token", |c| c.cluster_token = None),
            ("cluster_token", |c| c.cluster_token = Some(" \n".into())),
            ("cluster_token", |c| {
                c.cluster_token_file = Some("/dev/null".into())
            }),
            ("report_batch_size", |c| c.report_batch_size = 0),
            ("report_batch_size", |c| c.report_batch_size = 1_001),
            ("report_linger_ms", |c| c.report_linger_ms = 60_000),
            ("heartbeat_interval_ms", |c| c.heartbeat_interval_ms = 0),
            ("absent_kind_retry_ms", |c| c.absent_kind_retry_ms = 0),
            ("verbosity", |c| c.verbosity = 3),
        ];
        for (field, break_it) in cases {
            let mut config = valid();
            break_it(&mut config);
            assert_eq!(field_of(&config), field, "{config:?}");
        }
        let mut config = valid();
        config.cluster_id = "a b".into();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("cluster_id") && message.contains("whitespace"),
            "{message}"
        );
    }

    #[test]
    fn the_token_comes_from_a_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let config = ClusterlinkConfig {
            cluster_token: None,
            cluster_token_file: Some(path.clone()),
            ..valid()
        };
        assert_eq!(config.validate().unwrap().token, "from-file");
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(field_of(&config), "cluster_token", "an empty file");
        let missing = ClusterlinkConfig {
            cluster_token_file: Some(dir.path().join("nope")),
            ..config
        };
        let error = missing.validate().unwrap_err();
        assert_eq!(error.kind(), "token_file");
        assert!(error.to_string().contains("nope"), "{error}");
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        clusterlink: ClusterlinkArgs,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Layered {
        clusterlink: ClusterlinkConfig,
    }

    #[test]
    fn flags_reach_the_config() {
        let cli = Cli::try_parse_from([
            "serve",
            "--cluster-id",
            "c9",
            "--cluster-token-file",
            "/run/token",
            "--cluster-mode",
            "clas",
            "--network-type",
            "flat",
            "--kubeconfig",
            "/etc/kube",
            "--report-batch-size",
            "50",
            "--report-linger-ms",
            "5",
            "--heartbeat-interval-ms",
            "2000",
            "--verbosity",
            "2",
        ])
        .unwrap();
        let flags = cli.clusterlink.flags(Flags::default(), "clusterlink");
        let loaded: Layered = bulkhead_runtime::config::load(None, &flags).unwrap();
        assert_eq!(
            loaded.clusterlink,
            ClusterlinkConfig {
                cluster_id: "c9".into(),
                cluster_token: None,
                cluster_token_file: Some("/run/token".into()),
                cluster_mode: ClusterMode::Clas,
                network_type: NetworkType::Flat,
                kubeconfig: Some("/etc/kube".into()),
                report_batch_size: 50,
                report_linger_ms: 5,
                heartbeat_interval_ms: 2000,
                verbosity: 2,
                ..ClusterlinkConfig::default()
            }
        );
    }

    #[test]
    fn unknown_modes_are_refused_with_the_valid_ones() {
        let error = Cli::try_parse_from(["serve", "--cluster-mode", "migrateLegacyToClas"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("legacy") && error.contains("clas"),
            "{error}"
        );
        let flags = Flags::default().set("clusterlink.network_type", Some("bridged"));
        let error = bulkhead_runtime::config::load::<Layered>(None, &flags)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("overlay") && error.contains("flat"),
            "{error}"
        );
    }
}
