use std::path::PathBuf;

/// Why clusterlink could not start or had to stop. Once running, it retries whatever fails
/// (the Kubernetes API, the bus, inventory) rather than stopping.
#[derive(Debug, thiserror::Error)]
pub enum ClusterlinkError {
    #[error("invalid clusterlink setting `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("cannot read the cluster token from {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot load the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (neither in-cluster nor a kubeconfig): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("a clusterlink task ended before shutdown: {0}")]
    Task(String),
}

impl ClusterlinkError {
    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterlinkError::Config { .. } => "config",
            ClusterlinkError::TokenFile { .. } => "token_file",
            ClusterlinkError::Kubeconfig { .. } => "kubeconfig",
            ClusterlinkError::Infer(_) => "kube_config_infer",
            ClusterlinkError::Client(_) => "kube_client",
            ClusterlinkError::Task(_) => "task",
        }
    }
}
