//! What the tests of the `bulkhead` binary share: its processes, the CLI, and polling.
// Each test crate uses a part of this module.
#![allow(dead_code)]

pub mod control_plane;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");

/// A `bulkhead` process, killed if a test fails before stopping it.
pub struct Process(Child);

impl Process {
    pub fn spawn(args: &[&str], dir: &Path) -> Self {
        let child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("BULKHEAD_LOG", "warn")
            .env_remove("BULKHEAD_API_KEY")
            .env_remove("BULKHEAD_SERVER")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bulkhead starts");
        Process(child)
    }

    /// Sends SIGTERM and waits for the exit, at most `within`.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        bulkhead_runtime::testing::terminate(&mut self.0, within)
    }

    pub fn stdout(&mut self) -> String {
        use std::io::Read;
        let mut out = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn get(url: &str, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let mut args = vec!["-s", "-o", "-", "-w", "\n%{http_code}", url];
    let header;
    if let Some(key) = bearer {
        header = format!("Authorization: Bearer {key}");
        args.extend(["-H", &header]);
    }
    let out = Command::new("curl")
        .args(&args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Polls `url` until it answers 200, at most `within`.
pub fn wait_healthy(url: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = get(url, None);
        if code == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not 200 within {within:?}: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("BULKHEAD_API_KEY")
        .output()
        .unwrap()
}

/// Polls the CLI until `check` accepts its JSON output, at most `within`.
pub fn eventually_json(
    dir: &Path,
    args: &[&str],
    within: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let out = cli(dir, args);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if out.status.success() && check(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never satisfied the check: {json} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs kubectl against the cluster of `kubeconfig`; its output.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs (Debian package kubernetes-client)");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
