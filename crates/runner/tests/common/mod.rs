//! Helpers shared by the runner's integration tests: the repository root, the misbehave
//! fixture's .wasm (built when missing or stale), a shared compile cache, temp dirs, a GET.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn newest_mtime(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let m = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).unwrap()
        };
        newest = newest.max(m);
    }
    newest
}

/// The fixture's .wasm, built (or rebuilt when its sources are newer) if needed.
pub fn fixture_wasm() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let root = root();
        let wasm = root.join("target/wasm32-wasip2/wasm/misbehave.wasm");
        let fixture = root.join("tests/fixtures/misbehave");
        let src_time = newest_mtime(&fixture.join("src")).max(
            std::fs::metadata(fixture.join("Cargo.toml"))
                .and_then(|m| m.modified())
                .unwrap(),
        );
        let fresh = std::fs::metadata(&wasm)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= src_time);
        if !fresh {
            // `cargo test` holds the lock of its own target dir while tests run, so build in a
            // separate one and copy the module to where the fixture's spin.toml expects it.
            let build_dir = root.join("target/runner-fixture-build");
            let built = build_dir.join("wasm32-wasip2/wasm/misbehave.wasm");
            let ok = Command::new("cargo")
                .current_dir(&root)
                .env("CARGO_TARGET_DIR", &build_dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_BUILD_TARGET")
                .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2", "-p", "misbehave"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
                std::fs::copy(&built, &wasm).unwrap();
            } else if root.join("scripts/build-wasm.sh").exists() {
                // No rustup wasm32-wasip2 target: the project's script falls back to Debian's
                // toolchain, which builds in its own target dir (target/wasm-debian).
                let _ = Command::new("bash")
                    .current_dir(&root)
                    .env("WASM_TOOLCHAIN", "debian")
                    .arg("scripts/build-wasm.sh")
                    .status();
            }
        }
        assert!(
            wasm.exists(),
            "the misbehave fixture is missing at {}: build it with `cargo build --profile wasm --target wasm32-wasip2 -p misbehave` or `bash scripts/build-wasm.sh`",
            wasm.display()
        );
        wasm
    })
}

/// A compile cache shared by the tests of this binary, so only the first start compiles.
pub fn shared_cache() -> PathBuf {
    let dir = root().join("target/runner-test-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!(
        "visits-runner-test-{}-{name}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Minimal HTTP/1.0 GET (the server closes the connection after the body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read response");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Collects the runner's stderr into a shared log; sends the address once
/// "listening on http://ADDR" appears. The handle ends when the runner's stderr closes.
pub fn watch_stderr(
    child: &mut Child,
) -> (
    Arc<Mutex<String>>,
    mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let l = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("listening on http://") {
                let _ = tx.send(a.trim().to_string());
            }
            let mut g = l.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    (log, rx, reader)
}
