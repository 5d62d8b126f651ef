//! Errors, and their rendering as the API server's `Status` objects.

use std::{net::SocketAddr, path::PathBuf};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::kinds::Kind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} \"{name}\" not found", kind.desc().resource())]
    NotFound { kind: Kind, name: String },
    #[error("{} \"{name}\" already exists", kind.desc().resource())]
    AlreadyExists { kind: Kind, name: String },
    #[error(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        kind.desc().resource()
    )]
    Conflict { kind: Kind, name: String },
    /// The object is not acceptable (422 Invalid).
    #[error("{0}")]
    Invalid(String),
    /// The request is malformed (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// A resourceVersion or continue token older than the retained history (410 Expired).
    #[error("too old resource version: {0}")]
    Expired(u64),
    #[error("the server could not find the requested resource")]
    NoSuchPath,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {0})"
    )]
    UnsupportedMediaType(String),
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// HTTP status and Kubernetes `reason`.
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::NotFound { .. } | Error::NoSuchPath => (StatusCode::NOT_FOUND, "NotFound"),
            Error::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            Error::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Error::Expired(_) => (StatusCode::GONE, "Expired"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Error::Config(_) | Error::Bind { .. } | Error::Kubeconfig { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
        }
    }

    /// The `Status` object the API server answers (or sends in a watch `ERROR` event).
    pub(crate) fn status(&self) -> serde_json::Value {
        let (code, reason) = self.code();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        if let Error::NotFound { kind, name }
        | Error::AlreadyExists { kind, name }
        | Error::Conflict { kind, name } = self
        {
            let d = kind.desc();
            status["details"] = json!({ "name": name, "group": d.group, "kind": d.plural });
        }
        status
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.code().0, axum::Json(self.status())).into_response()
    }
}
