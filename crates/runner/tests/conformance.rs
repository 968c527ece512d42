//! Spin parity: every manifest of `tests/spin-conformance/` is run by the real `visits-runner`
//! binary. A case marked `# expect: refuse: <text>` must exit non-zero, quickly, with `<text>`
//! on its `error:` line; a case marked `# expect: accept` must start, answer
//! `/.well-known/spin/health` and each `# get:` line over a real socket, then is stopped.
//! The header format is described in tests/spin-conformance/README.md.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A refused manifest must be refused before any component is compiled: this is generous for a
/// loaded 2-core machine; a refusal takes a few milliseconds.
const REFUSE_WITHIN: Duration = Duration::from_secs(20);
const START_WITHIN: Duration = Duration::from_secs(180);
const CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
enum Expect {
    Accept,
    Refuse(String),
}

#[derive(Debug, Clone)]
struct Get {
    path: String,
    status: u16,
    body: Option<String>,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    manifest: PathBuf,
    expect: Expect,
    warn: Option<String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    gets: Vec<Get>,
}

fn corpus_dir() -> PathBuf {
    root().join("tests/spin-conformance")
}

/// Reads the `# key: value` header of one case; a missing or malformed header is an error.
fn parse_case(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut case = Case {
        name: name.clone(),
        manifest: path.to_path_buf(),
        expect: Expect::Accept,
        warn: None,
        env: vec![],
        args: vec![],
        gets: vec![],
    };
    let (mut expect, mut source, mut why) = (false, false, false);
    for line in text.lines() {
        let Some(header) = line.strip_prefix("# ") else {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            break; // the manifest proper
        };
        let Some((key, value)) = header.split_once(": ") else {
            continue;
        };
        let value = value.trim();
        match key {
            "expect" => {
                expect = true;
                case.expect = match value.strip_prefix("refuse: ") {
                    Some(needle) if !needle.is_empty() => Expect::Refuse(needle.to_string()),
                    _ if value == "accept" => Expect::Accept,
                    _ => return Err(format!("{name}: bad `# expect: {value}`")),
                };
            }
            "spin-source" => source = !value.is_empty(),
            "why" => why = !value.is_empty(),
            "stricter" => {}
            "warn" => case.warn = Some(value.to_string()),
            "env" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("{name}: bad `# env: {value}`"))?;
                case.env.push((k.to_string(), v.to_string()));
            }
            "args" => case.args = value.split_whitespace().map(str::to_string).collect(),
            "file" => case.manifest = path.parent().unwrap().join(value),
            "get" => {
                let mut it = value.splitn(3, ' ');
                let (p, s) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                let status = s
                    .parse()
                    .map_err(|_| format!("{name}: bad `# get: {value}`"))?;
                case.gets.push(Get {
                    path: p.to_string(),
                    status,
                    body: it.next().map(str::to_string),
                });
            }
            other => return Err(format!("{name}: unknown header `# {other}:`")),
        }
    }
    if !(expect && source && why) {
        return Err(format!(
            "{name}: every case needs `# expect:`, `# spin-source:` and `# why:` headers"
        ));
    }
    if matches!(case.expect, Expect::Refuse(_)) && !(case.gets.is_empty() && case.warn.is_none()) {
        return Err(format!(
            "{name}: `# get:` and `# warn:` are for accepted cases"
        ));
    }
    Ok(case)
}

fn command(case: &Case, state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_visits-runner"));
    cmd.arg("up")
        .arg("-f")
        .arg(&case.manifest)
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(&case.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Only the case decides which variables are set.
    for (k, _) in std::env::vars() {
        if k.starts_with("SPIN_VARIABLE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    cmd
}

/// Polls `cond` for up to a second (log lines are written just after the response).
fn wait_for(cond: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Runs one case; `Err` says what went wrong, with the runner's stderr.
fn run_case(case: &Case) -> Result<Duration, String> {
    let t0 = Instant::now();
    let state = temp_dir(&format!("conformance-{}", case.name));
    let mut child = command(case, &state)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let (log, listening, reader) = watch_stderr(&mut child);
    let mut reader = Some(reader);
    let result = match &case.expect {
        Expect::Refuse(needle) => loop {
            if let Some(status) = child.try_wait().unwrap() {
                // The child is gone: its stderr ends, the reader drains it.
                let _ = reader.take().map(|r| r.join());
                let err = log.lock().unwrap().clone();
                let last = err.lines().last().unwrap_or_default();
                break if status.success() {
                    Err(format!("exited 0, expected a refusal:\n{err}"))
                } else if !last.starts_with("error: ") || !last.contains(needle.as_str()) {
                    Err(format!("the error line lacks {needle:?}:\n{err}"))
                } else {
                    Ok(t0.elapsed())
                };
            }
            if t0.elapsed() > REFUSE_WITHIN {
                break Err(format!(
                    "still running after {REFUSE_WITHIN:?}, expected a refusal:\n{}",
                    log.lock().unwrap()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        },
        Expect::Accept => match listening.recv_timeout(START_WITHIN) {
            Err(_) => Err(format!(
                "did not start (exit {:?}):\n{}",
                child.try_wait().ok().flatten(),
                log.lock().unwrap()
            )),
            Ok(addr) => {
                let addr = addr.parse().unwrap();
                let health = Get {
                    path: "/.well-known/spin/health".into(),
                    status: 200,
                    body: None,
                };
                let mut failures = Vec::new();
                for g in std::iter::once(&health).chain(&case.gets) {
                    let (status, body) = http_get(addr, &g.path, Duration::from_secs(30));
                    let body_ok = match g.body.as_deref() {
                        None => true,
                        // `@id`: the runner's request log says component `id` answered.
                        Some(b) if b.starts_with('@') => {
                            let (start, end) = (
                                format!("GET {} {status} ", g.path),
                                format!("[{}]", &b[1..]),
                            );
                            wait_for(|| {
                                log.lock()
                                    .unwrap()
                                    .lines()
                                    .any(|l| l.starts_with(&start) && l.ends_with(&end))
                            })
                        }
                        Some(b) => body.contains(b),
                    };
                    if status != g.status || !body_ok {
                        failures.push(format!(
                            "GET {} answered {status} {body:?}, expected {} {:?}",
                            g.path, g.status, g.body
                        ));
                    }
                }
                if let Some(w) = &case.warn {
                    if !log.lock().unwrap().contains(w.as_str()) {
                        failures.push(format!("no warning containing {w:?}"));
                    }
                }
                if failures.is_empty() {
                    Ok(t0.elapsed())
                } else {
                    Err(format!("{}\n{}", failures.join("\n"), log.lock().unwrap()))
                }
            }
        },
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&state);
    result
}

#[test]
fn spin_conformance_corpus() {
    let t0 = Instant::now();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/spin-conformance")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let (cases, bad): (Vec<_>, Vec<_>) =
        files.iter().map(|p| parse_case(p)).partition(Result::is_ok);
    let bad: Vec<String> = bad.into_iter().map(Result::unwrap_err).collect();
    assert!(bad.is_empty(), "malformed cases:\n{}", bad.join("\n"));
    let cases: Vec<Case> = cases.into_iter().map(Result::unwrap).collect();
    let accepted = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Accept))
        .count();
    assert!(
        accepted > 0 && accepted < cases.len(),
        "the corpus needs both kinds of case"
    );

    // Compile the fixture once (into the shared cache) before cases start in parallel.
    fixture_wasm();
    let first = cases
        .iter()
        .position(|c| c.name == "kv-default")
        .expect("the kv-default case warms the compile cache");
    let mut results = vec![(cases[first].name.clone(), run_case(&cases[first]))];

    let queue = Mutex::new(
        cases
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != first)
            .map(|(_, c)| c.clone())
            .collect::<Vec<_>>(),
    );
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop() else {
                    break;
                };
                let r = run_case(&case);
                done.lock().unwrap().push((case.name.clone(), r));
            });
        }
    });
    results.extend(done.into_inner().unwrap());
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let failures: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("--- {name}: {e}")))
        .collect();
    let slowest = results
        .iter()
        .filter_map(|(n, r)| r.as_ref().ok().map(|d| (d, n)))
        .max();
    eprintln!(
        "spin conformance: {} cases ({accepted} accept, {} refuse) in {:.1} s; slowest {:?}",
        cases.len(),
        cases.len() - accepted,
        t0.elapsed().as_secs_f64(),
        slowest
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
