//! Starts `nx-27017` (PyPI), an independent MongoDB wire-protocol server backed by SQLite.

#![allow(dead_code)]

pub mod fake;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NX: &str = "nx-27017";

/// A running nx-27017 on a free loopback port; killed on drop.
pub struct NxServer {
    child: Child,
    pub addr: SocketAddr,
    pub db: PathBuf,
}

/// Is the nx-27017 executable on PATH?
pub fn nx_available() -> bool {
    Command::new(NX)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Returns false (and says why) when the test must be skipped: only when nx-27017 is missing
/// and `CI` is unset. In CI a missing server fails the test.
pub fn should_run(test: &str) -> bool {
    if nx_available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: `{NX}` is not installed but CI is set (pip install nx-27017)");
    }
    eprintln!("SKIPPED {test}: `{NX}` is not installed (pip install nx-27017); set CI=1 to make this fail");
    false
}

pub fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mongo-wire-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&p);
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NxServer {
    pub fn start(db: &Path) -> NxServer {
        Self::start_on(db, free_port())
    }

    pub fn start_on(db: &Path, port: u16) -> NxServer {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = db.with_extension("log");
        let pid = db.with_extension(format!("{port}.pid"));
        let child = Command::new(NX)
            .arg("--db")
            .arg(db)
            .args(["--host", "127.0.0.1", "-p", &port.to_string()])
            .arg("--log-file")
            .arg(&log)
            .arg("--pid-file")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nx-27017");
        let mut server = NxServer {
            child,
            addr,
            db: db.to_path_buf(),
        };
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("nx-27017 exited early ({status}); see {}", log.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nx-27017 did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NxServer {
    fn drop(&mut self) {
        self.kill();
    }
}
