//! The CLI's side of the REST API: requests, errors, and table or JSON output.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use comfy_table::Table;
use serde_json::Value;

use crate::cli::{Output, RemoteArgs, resolve_api_key};

/// Writes a line to stdout; when the reader has gone (`bulkhead ... | head`), ends the process
/// quietly instead of panicking, as a command in a pipe is expected to.
pub fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout(), "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// `println!` for the CLI's output: see [`emit`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::client::emit(format_args!($($arg)*)) };
}
pub(crate) use out;

pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl Client {
    pub fn new(remote: &RemoteArgs) -> anyhow::Result<Self> {
        // reqwest is built without a bundled crypto provider; use ring, like the rest of the build.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            base: remote.server.trim_end_matches('/').to_owned(),
            api_key: resolve_api_key(remote.api_key.as_deref()),
        })
    }

    /// Sends a request to `path` (below `/api/v2`) and returns the JSON body of the answer,
    /// whatever its status.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v2{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        // Updates and deletes answer 204 without a body.
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        response
            .json()
            .await
            .with_context(|| format!("{url} answered {status} without JSON"))
    }

    /// Like [`Self::send`], but an answer in the error shape is an `Err` with its message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let answer = self.send(method, path, body).await?;
        if answer.get("error").is_some() {
            return Err(api_error(&answer));
        }
        Ok(answer)
    }

    /// `bulkhead health`.
    pub async fn health(&self, output: Output) -> anyhow::Result<ExitCode> {
        let body = self.send(reqwest::Method::GET, "/health", None).await?;
        let status = body["status"].as_str().ok_or_else(|| api_error(&body))?;
        match output {
            Output::Json => out!("{}", serde_json::to_string_pretty(&body)?),
            Output::Table => {
                let mut table = Table::new();
                table.set_header(["SERVICE", "STATE", "INSTANCES"]);
                for service in body["services"].as_array().into_iter().flatten() {
                    let instances = service["instances"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|i| format!("{} ({})", text(&i["instance"]), text(&i["state"])))
                        .collect::<Vec<_>>()
                        .join(", ");
                    table.add_row([text(&service["name"]), text(&service["state"]), instances]);
                }
                out!("{table}\nstatus: {status}");
            }
        }
        Ok(if status == "healthy" {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// Prints `rows` (JSON objects) as a table of `columns`, or the whole answer as JSON.
pub fn print(
    output: Output,
    answer: &Value,
    rows: &[Value],
    columns: &[(&str, &str)],
) -> anyhow::Result<()> {
    if output == Output::Json {
        out!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header(columns.iter().map(|(header, _)| *header));
    for row in rows {
        table.add_row(columns.iter().map(|(_, key)| text(&row[*key])));
    }
    out!("{table}");
    Ok(())
}

/// Which page of a list to ask for.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PageArgs {
    /// At most this many entries (1 to 1000).
    #[arg(long, default_value_t = 500)]
    pub max_results: u32,
    /// Skip this many entries first.
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
}

impl PageArgs {
    /// The largest page the API serves, for looking things up.
    pub const LARGEST: PageArgs = PageArgs {
        max_results: 1000,
        offset: 0,
    };
}

/// `path?query`, with the given filters (those set) and the page, URL-encoded.
pub fn with_query(path: &str, filters: &[(&str, Option<&str>)], page: &PageArgs) -> String {
    let mut url = reqwest::Url::parse("http://bulkhead.invalid/").expect("a valid base URL");
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in filters {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
        query.append_pair("max_results", &page.max_results.to_string());
        query.append_pair("offset", &page.offset.to_string());
    }
    format!("{path}?{}", url.query().unwrap_or_default())
}

/// `text` as one segment of a path, so that a name with `/`, `?` or spaces stays one.
pub fn path_segment(text: &str) -> String {
    let mut url = reqwest::Url::parse("http://bulkhead.invalid/").expect("a valid base URL");
    url.path_segments_mut()
        .expect("an http URL has a path")
        .push(text);
    url.path()[1..].to_owned()
}

pub fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// The error the API reported, in its standard shape, or the body as it came.
fn api_error(body: &Value) -> anyhow::Error {
    match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(code), Some(message)) => anyhow!("{message} ({code})"),
        _ => anyhow!("unexpected answer: {body}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_skip_unset_filters() {
        let page = PageArgs {
            max_results: 10,
            offset: 20,
        };
        assert_eq!(
            with_query("/x", &[("name", Some("a b&c")), ("node", None)], &page),
            "/x?name=a+b%26c&max_results=10&offset=20"
        );
    }

    #[test]
    fn path_segments_keep_names_whole() {
        assert_eq!(path_segment("team maps/eu?x"), "team%20maps%2Feu%3Fx");
        assert_eq!(path_segment("prod-1"), "prod-1");
    }
}
