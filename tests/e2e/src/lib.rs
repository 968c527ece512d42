//! The harness of the end-to-end suite: real processes on real loopback sockets.
//!
//! - [`Redis`]: a `redis-server` (Debian package) on a free port, no persistence.
//! - [`Mongo`]: `nx-27017` (PyPI), an independent MongoDB wire-protocol server on SQLite. It is
//!   not MongoDB: authentication and replica sets are tested elsewhere (mongo-wire, gated on a
//!   real server).
//! - [`AuthProxy`]: SCRAM-SHA-256 authentication in front of that nx-27017 (which has none),
//!   from `mongo_wire::testing`'s server side of SCRAM.
//! - [`App`]: one edition of the app — the Wasm components under `visits-runner up`, or the
//!   native `visits-native` — configured with the same setting names.
//!
//! Binaries come from `target/release` (built by `make test`), or from `VISITS_RUNNER_BIN` /
//! `VISITS_NATIVE_BIN`. A missing binary or server fails the test with what to run: the suite
//! never skips silently.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// Which edition a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    Wasm,
    Native,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

fn binary(env: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release").join(name));
    assert!(
        path.is_file(),
        "{} not found: build it with `cargo build --release -p {name}` (make test does), or set {env}",
        path.display()
    );
    path
}

/// A free loopback port (bound then released; the child binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    if let Err(why) = try_wait_for_port(port, child) {
        panic!("{what} {why}");
    }
}

fn try_wait_for_port(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited before listening on {port}: {status}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!("did not listen on port {port} within 20 s"))
}

fn spawn(cmd: &mut Command, what: &str, hint: &str) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({e}): {hint}"))
}

fn stop(child: &mut Child) {
    // SIGTERM first so servers flush and exit as they would in production.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A throwaway directory under target/, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = repo_root()
            .join("target/e2e-tmp")
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real `redis-server` on a free loopback port.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut child = spawn(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"]),
            "redis-server",
            "install it with `apt-get install redis-server` (scripts/setup.sh does)",
        );
        wait_for_port(port, "redis-server", &mut child);
        Redis { child, port }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs one command with the real `redis-cli` and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// `nx-27017`, a MongoDB wire-protocol server backed by a SQLite file.
pub struct Mongo {
    child: Child,
    pub port: u16,
}

impl Mongo {
    /// Starts nx-27017 on `port` with its pid and log files next to `db_file`: its defaults
    /// (`/tmp/nx_27017.pid`, `/tmp/nx_27017.log`) are shared, so a second server running at the
    /// same time (the other edition's scenario) would refuse to start with "already running".
    pub fn start(db_file: &Path, port: u16) -> Mongo {
        let log = db_file.with_extension(format!("{port}.log"));
        let stderr = std::fs::File::create(db_file.with_extension(format!("{port}.stderr")))
            .expect("create nx-27017 stderr file");
        let mut cmd = Command::new("nx-27017");
        cmd.arg("--db")
            .arg(db_file)
            .args(["--host", "127.0.0.1", "-p", &port.to_string()])
            .arg("--log-file")
            .arg(&log)
            .arg("--pid-file")
            .arg(db_file.with_extension(format!("{port}.pid")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start nx-27017 ({e}): install it with `pip install nx-27017` (scripts/setup.sh does)")
        });
        if let Err(why) = try_wait_for_port(port, &mut child) {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(db_file.with_extension(format!("{port}.stderr")))
                .unwrap_or_default();
            panic!("nx-27017 {why}; its stderr:\n{stderr}");
        }
        Mongo { child, port }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SCRAM-SHA-256 in front of an nx-27017: answers `hello`, `saslStart` and `saslContinue`
/// itself (one user, MongoDB's default 15,000 iterations) and forwards every other command to
/// the server behind it, but only once the client has proved the password. One conversation at
/// a time: scenarios that use it send their requests one after another.
pub struct AuthProxy {
    fake: mongo_wire::testing::Fake,
}

impl AuthProxy {
    pub fn start(upstream: &Mongo, user: &str, password: &str) -> AuthProxy {
        use mongo_wire::bson::doc;
        use mongo_wire::testing::{unauthorized, Action, Fake};
        use mongo_wire::{Client, ClientOptions, Error, Mechanism, StdConnector};
        let scram = Mutex::new(mongo_wire::testing::ScramServer::new(
            Mechanism::ScramSha256,
            user,
            password,
            b"wasm-visits-salt",
            15_000,
        ));
        let upstream: SocketAddr = upstream.address().parse().unwrap();
        let forward = move |body: &mongo_wire::bson::Document| {
            let mut body = body.clone();
            let db = body.get_str("$db").unwrap_or("admin").to_string();
            body.remove("$db");
            let result = Client::connect(StdConnector, ClientOptions::new(vec![upstream]))
                .and_then(|mut c| c.run_command(&db, body));
            match result {
                Ok(reply) => reply,
                Err(Error::Command { code, message, .. }) => {
                    doc! {"ok": 0.0, "code": code, "errmsg": message}
                }
                Err(e) => doc! {"ok": 0.0, "code": 1, "errmsg": e.to_string()},
            }
        };
        let fake = Fake::start(move |name, body, _| {
            let mut scram = scram.lock().unwrap();
            Action::Reply(match scram.reply(name, body) {
                Some(reply) => reply,
                None if scram.authenticated => forward(body),
                None => unauthorized(),
            })
        });
        AuthProxy { fake }
    }

    pub fn address(&self) -> String {
        self.fake.addr.to_string()
    }

    /// Every command received, in order.
    pub fn commands(&self) -> Vec<String> {
        self.fake.commands()
    }
}

/// One running edition of the app.
pub struct App {
    child: Child,
    pub edition: Edition,
    pub base: String,
    /// Where its Prometheus metrics are: the native edition's own port, the runner's
    /// `--admin-listen` address when [`App::start_with_metrics`] started it.
    pub metrics_url: Option<String>,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// Settings for an [`App`]: Spin variable names (the native edition gets them upper-cased).
pub type Settings<'a> = &'a [(&'a str, &'a str)];

impl App {
    /// Starts the edition with these settings; `state` holds the Wasm edition's embedded stores.
    pub fn start(edition: Edition, settings: Settings<'_>, state: &Path) -> App {
        App::start_inner(edition, settings, state, None)
    }

    /// Like [`App::start`], with the runner's admin listener on a free port.
    pub fn start_with_metrics(edition: Edition, settings: Settings<'_>, state: &Path) -> App {
        let admin = format!("127.0.0.1:{}", free_port());
        App::start_inner(edition, settings, state, Some(admin))
    }

    fn start_inner(
        edition: Edition,
        settings: Settings<'_>,
        state: &Path,
        admin: Option<String>,
    ) -> App {
        let mut cmd = match edition {
            Edition::Wasm => {
                let mut cmd = Command::new(binary("VISITS_RUNNER_BIN", "visits-runner"));
                cmd.arg("up")
                    .args(["--listen", "127.0.0.1:0", "--quiet"])
                    .arg("-f")
                    .arg(repo_root().join("spin.toml"))
                    .arg("--state-dir")
                    .arg(state)
                    // One compile cache for the whole suite: starts stay fast and cache hits are
                    // exercised on every start after the first.
                    .arg("--cache-dir")
                    .arg(repo_root().join("target/e2e-cache"));
                for (k, v) in settings {
                    cmd.arg("--variable").arg(format!("{k}={v}"));
                }
                if let Some(admin) = &admin {
                    cmd.args(["--admin-listen", admin]);
                }
                cmd
            }
            Edition::Native => {
                let mut cmd = Command::new(binary("VISITS_NATIVE_BIN", "visits-native"));
                cmd.env("LISTEN_ADDRESS", "127.0.0.1:0").env("QUIET", "1");
                for (k, v) in settings {
                    cmd.env(k.to_ascii_uppercase(), v);
                }
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {edition:?} edition: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(
                            addr.split_whitespace()
                                .next()
                                .unwrap_or_default()
                                .to_string(),
                        );
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{edition:?} edition did not start; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let metrics_url = match edition {
            Edition::Wasm => admin.map(|a| format!("http://{a}/metrics")),
            Edition::Native => Some(format!("http://{addr}/metrics")),
        };
        App {
            child,
            edition,
            base: format!("http://{addr}"),
            metrics_url,
            log,
            agent,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The metrics exposition, checked by Prometheus's own parser (`promtool check metrics`).
    pub fn metrics(&self) -> Metrics {
        let url = self
            .metrics_url
            .as_deref()
            .expect("started without metrics: use App::start_with_metrics");
        let resp = self
            .agent
            .get(url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}\nlog:\n{}", self.log()));
        assert_eq!(
            resp.content_type(),
            "text/plain",
            "the text exposition format"
        );
        let mut text = String::new();
        resp.into_reader().read_to_string(&mut text).unwrap();
        promtool_check(&text);
        Metrics(text)
    }

    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// One request; any status is a [`Reply`] (only transport failures panic).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!(
                "{method} {path} on the {:?} edition failed: {e}\nlog:\n{}",
                self.edition,
                self.log()
            ),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .map(|n| {
                let v = resp.header(&n).unwrap_or_default().to_string();
                (n, v)
            })
            .collect();
        let mut body = String::new();
        resp.into_reader()
            .read_to_string(&mut body)
            .expect("a UTF-8 body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[])
    }

    /// `GET /` as JSON.
    pub fn page_json(&self, headers: &[(&str, &str)]) -> Value {
        let mut all = vec![("accept", "application/json")];
        all.extend_from_slice(headers);
        let reply = self.request("GET", "/", &all);
        assert_eq!(
            reply.status,
            200,
            "GET / failed: {}\nlog:\n{}",
            reply.body,
            self.log()
        );
        reply.json()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// `promtool check metrics` (Debian `prometheus`): parses the exposition as a Prometheus
/// server would and lints it; any complaint fails the test.
fn promtool_check(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install Debian's prometheus (scripts/setup.sh does)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scraped exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of one series, written as exposed (`name{label="v",...}`), 0 when absent (a
    /// counter nothing has touched yet).
    pub fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}
