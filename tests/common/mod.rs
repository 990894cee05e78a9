//! Shared test helpers: the real `stagehand` binary on a free port, the API of an in-process
//! runtime on a real HTTP server, and waiting on conditions (never on fixed sleeps).
#![allow(dead_code)]

pub mod redis;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Settings for a service whose `email` queue has no processor: its jobs wait (tests that
/// look at waiting jobs use it).
pub const EMAIL_WAITS: &str = "[queues.email]\nprocessor = \"none\"\n";
/// The same as an environment variable.
pub const EMAIL_WAITS_ENV: (&str, &str) = ("STAGEHAND_QUEUES_EMAIL_PROCESSOR", "none");

/// How long any condition may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// For conditions that take a lot of work (thousands of jobs in a debug build).
pub const LONG_PATIENCE: Duration = Duration::from_secs(180);

/// Polls `check` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(PATIENCE, what, check).await
}

/// Polls `check` until it returns `Some`, failing the test after `patience`.
pub async fn eventually_within<T, F, Fut>(patience: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(patience, check).await {
        Some(v) => v,
        None => panic!("timed out waiting for {what}"),
    }
}

/// Polls `check` until it returns `Some`, or `None` once `patience` has passed.
pub async fn poll_until<T, F, Fut>(patience: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() >= patience {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// How each attempt of a job (as the API shows it) ended, in order.
pub fn outcomes(job: &Value) -> Vec<String> {
    job["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["outcome"].as_str().expect("outcome").to_string())
        .collect()
}

/// A JSON HTTP client for one server.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Self {
        // Idle connections are dropped well before the server's 5 s keep-alive ends them, so a
        // request never races the server closing the connection it was sent on.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        Api { base, client }
    }

    /// GET, returning status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST raw bytes as JSON.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// PUT a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .put(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("PUT");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .expect("DELETE");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Adds a job; returns its id.
    pub async fn add(&self, queue: &str, body: Value) -> String {
        let (status, answer) = self.post(&format!("/api/queues/{queue}/jobs"), &body).await;
        assert_eq!(status, 201, "{answer}");
        answer["id"].as_str().expect("id").to_string()
    }

    /// A job as JSON.
    pub async fn job(&self, queue: &str, id: &str) -> Value {
        let (status, job) = self.get(&format!("/api/queues/{queue}/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Waits until a job is in `state`; returns it.
    pub async fn wait_state(&self, queue: &str, id: &str, state: &str) -> Value {
        let last = std::cell::RefCell::new(Value::Null);
        let found = poll_until(PATIENCE, || async {
            let job = self.job(queue, id).await;
            if job["state"] == state {
                return Some(job);
            }
            *last.borrow_mut() = job;
            None
        })
        .await;
        let last = last.into_inner();
        found.unwrap_or_else(|| panic!("job {id} never became {state}; last seen: {last}"))
    }

    /// A queue's counts.
    pub async fn counts(&self, queue: &str) -> Value {
        let (status, q) = self.get(&format!("/api/queues/{queue}")).await;
        assert_eq!(status, 200, "{q}");
        q["counts"].clone()
    }
}

/// The `stagehand` binary serving on a free port from its own temporary directory.
pub struct Service {
    pub api: Api,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

/// The port in the service's "stagehand serving listening=127.0.0.1:PORT" log line (or its
/// JSON form, `"listening":"127.0.0.1:PORT"`).
fn listening_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("stagehand serving"))?;
    let addr = match line.split("listening=").nth(1) {
        Some(rest) => rest.split([' ', ',']).next()?,
        None => line
            .split("\"listening\":\"")
            .nth(1)?
            .split(['"', ','])
            .next()?,
    };
    addr.rsplit(':').next()?.parse().ok()
}

/// Debian's Python, which has the test's Python packages (`python3-aiosmtpd`,
/// `python3-prometheus-client`); another `python3` may come first on PATH.
pub fn python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("python3")
    }
}

/// The path of the built `stagehand` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stagehand"))
}

impl Service {
    /// Starts `stagehand serve` with this TOML as its config file, on a port the OS picks
    /// (`STAGEHAND_HTTP_BIND=127.0.0.1:0`, read back from its log) and a storage directory of
    /// its own, and waits until `/health` answers. Fails with the service's log if it exits.
    pub async fn start(toml: &str) -> Service {
        Service::start_with(toml, &[]).await
    }

    /// As [`Service::start`], with more environment variables (later ones win).
    pub async fn start_with(toml: &str, env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stagehand.toml");
        std::fs::write(&path, toml).expect("write config");
        let log = std::fs::File::create(dir.path().join("stagehand.log")).expect("log file");
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("STAGEHAND_HTTP_BIND", "127.0.0.1:0")
            .env("STAGEHAND_STORAGE_PATH", dir.path().join("data"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn stagehand");
        let mut service = Service {
            api: Api::new(String::new()),
            dir,
            port: 0,
            child: Some(child),
        };
        let start = Instant::now();
        loop {
            if service.port == 0
                && let Some(port) = listening_port(&service.log())
            {
                service.port = port;
                service.api = Api::new(format!("http://127.0.0.1:{port}"));
            }
            if service.port != 0
                && let Ok(r) = reqwest::get(format!("{}/health", service.api.base)).await
                && r.status().is_success()
            {
                return service;
            }
            if let Some(child) = service.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "stagehand exited with {status} before serving:\n{}",
                    service.log()
                );
            }
            assert!(
                start.elapsed() < PATIENCE,
                "stagehand never answered /health:\n{}",
                service.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stagehand.log")).unwrap_or_default()
    }

    /// A file the service wrote under its storage directory.
    pub fn data_file(&self, key: &str) -> PathBuf {
        self.dir.path().join("data").join(key)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        eventually("the service to exit", || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }

    /// Sends `signal` and waits up to `patience` for the process to exit; `None` if it is
    /// still running then (it is killed when the service is dropped).
    pub async fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
        patience: Duration,
    ) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal");
        let status = poll_until(patience, || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Kills the process at once (SIGKILL): no shutdown, no hand-back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the binary's CLI against this service.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .env("STAGEHAND_SERVER", &self.api.base)
            .output()
            .expect("run the CLI")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `stagehand serve` with `args` and `env`, expecting it to refuse to start; returns
/// its exit code and stderr.
pub fn refused_start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run stagehand serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Serves the API of an in-process runtime on a real HTTP server on a free port. Call inside
/// an actix system (`#[actix_web::test]`).
pub fn serve_api(
    runtime: stagehand::actors::RuntimeHandle,
    max_body_bytes: usize,
) -> (Api, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpServer, web};
    let state = stagehand::http::ApiState::new(runtime, max_body_bytes);
    let server = HttpServer::new(move || {
        App::new()
            .service(stagehand::http::scope("", state.clone()))
            .default_service(web::to(stagehand::http::not_found))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (Api::new(format!("http://{addr}")), handle)
}

/// An alert sink that keeps what it is given, for tests to look at.
#[derive(Default)]
pub struct Collect(pub parking_lot::Mutex<Vec<stagehand::actors::Alert>>);

#[async_trait::async_trait]
impl stagehand::actors::AlertSink for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    async fn deliver(&self, alert: &stagehand::actors::Alert) -> Result<(), String> {
        self.0.lock().push(alert.clone());
        Ok(())
    }
}

impl Collect {
    /// The kinds of the alerts so far, in order.
    pub fn kinds(&self) -> Vec<stagehand::actors::AlertKind> {
        self.0.lock().iter().map(|a| a.kind).collect()
    }
}
