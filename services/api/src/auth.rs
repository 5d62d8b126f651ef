//! API key authentication of everything under `/api/v2/` but health and the OpenAPI document.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::HttpError;
use crate::keys::KeyRecord;
use crate::{AppState, metrics};

/// The key a request authenticated with, for handlers (`Extension<Caller>`).
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) KeyRecord);

/// Why a request was refused; `reason` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Missing,
    Malformed,
    Wrong,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Wrong => "wrong",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "an API key is required: send `Authorization: Bearer <key>`",
            Refusal::Malformed => {
                "the Authorization header is neither `Bearer <key>` nor HTTP Basic with the key as password"
            }
            Refusal::Wrong => "the API key is not valid",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = HttpError::new(StatusCode::UNAUTHORIZED, self.message()).into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="bulkhead""#),
        );
        response
    }
}

/// The key in `Authorization: Bearer <key>`, or the password of HTTP Basic credentials: users
/// of the reference product's API keys send the key id as user name and the key as password.
fn presented_key(headers: &HeaderMap) -> Result<String, Refusal> {
    let value = headers.get(AUTHORIZATION).ok_or(Refusal::Missing)?;
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, credentials) = value.trim().split_once(' ').ok_or(Refusal::Malformed)?;
    let credentials = credentials.trim();
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASE64.decode(credentials).map_err(|_| Refusal::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Refusal::Malformed)?;
        let (_user, password) = decoded.split_once(':').ok_or(Refusal::Malformed)?;
        password.to_owned()
    } else {
        return Err(Refusal::Malformed);
    };
    if key.is_empty() {
        Err(Refusal::Malformed)
    } else {
        Ok(key)
    }
}

/// Lets a request through only with a valid API key, and tells the handler whose it is.
pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let verdict = presented_key(request.headers())
        .and_then(|key| state.keys.verify(&key).cloned().ok_or(Refusal::Wrong));
    match verdict {
        Ok(key) => {
            request.extensions_mut().insert(Caller(key));
            next.run(request).await
        }
        Err(refusal) => {
            metrics::AUTH_FAILURES
                .with_label_values(&[refusal.reason()])
                .inc();
            tracing::warn!(
                reason = refusal.reason(),
                method = %request.method(),
                path = request.uri().path(),
                "refused a request without a valid API key"
            );
            refusal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(authorization: &str) -> Result<String, Refusal> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        presented_key(&headers)
    }

    fn basic(user_and_password: &str) -> String {
        format!("Basic {}", BASE64.encode(user_and_password))
    }

    #[test]
    fn bearer_and_basic_present_the_key() {
        assert_eq!(parse("Bearer bhk_1"), Ok("bhk_1".into()));
        assert_eq!(parse("bearer  bhk_1 "), Ok("bhk_1".into()));
        assert_eq!(parse(&basic("key-id:bhk_1")), Ok("bhk_1".into()));
        assert_eq!(parse(&basic(":bhk_1")), Ok("bhk_1".into()));
        assert_eq!(
            parse(&basic("user:pass:with:colons")),
            Ok("pass:with:colons".into())
        );
    }

    #[test]
    fn anything_else_is_missing_or_malformed() {
        assert_eq!(presented_key(&HeaderMap::new()), Err(Refusal::Missing));
        for bad in [
            "Bearer",
            "Bearer ",
            "Token bhk_1",
            "bhk_1",
            "Basic !!!",
            &basic("no-colon"),
            &basic("user:"),
        ] {
            assert_eq!(parse(bad), Err(Refusal::Malformed), "{bad}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(presented_key(&headers), Err(Refusal::Malformed));
    }
}
