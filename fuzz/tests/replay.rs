//! Every saved input through the fuzz targets' checks, on stable Rust (make test-fuzz-corpus,
//! in CI): what the fuzzer found once (corpus/ after `cargo fuzz cmin`, plus any crash it
//! reported, kept in regressions/) stays found. The manifest target also takes the Spin
//! conformance corpus, its seeds.

use std::path::{Path, PathBuf};

fn inputs(dirs: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    out.sort();
    out
}

#[test]
fn manifest_inputs_pass_the_checks() {
    let files = inputs(&[
        "corpus/manifest",
        "regressions/manifest",
        "../tests/spin-conformance",
    ]);
    assert!(
        files.len() > 100,
        "only {} inputs: corpus missing?",
        files.len()
    );
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| wasm_visits_fuzz::manifest(&data));
        assert!(r.is_ok(), "{} fails the manifest checks", f.display());
    }
    println!("manifest: {} inputs replayed", files.len());
}

#[test]
fn request_inputs_pass_the_checks() {
    let files = inputs(&["corpus/request", "regressions/request"]);
    assert!(!files.is_empty(), "no request corpus");
    let mut built = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        // As libfuzzer-sys decodes it; an input too short for a case is skipped there too.
        let u = arbitrary::Unstructured::new(&data);
        let Ok(case) =
            <wasm_visits_fuzz::RequestCase as arbitrary::Arbitrary>::arbitrary_take_rest(u)
        else {
            continue;
        };
        built += 1;
        let r = std::panic::catch_unwind(|| wasm_visits_fuzz::request(&case));
        assert!(
            r.is_ok(),
            "{} fails the request checks: {case:?}",
            f.display()
        );
    }
    println!("request: {built} of {} inputs replayed", files.len());
}

#[test]
fn a_client_cannot_forge_the_hosts_spin_headers() {
    // The request check itself must catch a forged value: feed it one for every header.
    let forged = [
        "spin-path-info",
        "spin-full-url",
        "spin-matched-route",
        "spin-base-path",
        "spin-raw-component-route",
        "spin-component-route",
        "spin-client-addr",
        "spin-path-match-id",
    ];
    let case = wasm_visits_fuzz::RequestCase {
        base: "/".into(),
        routes: vec![("/items/:id/...".into(), "app".into())],
        target: "/items/7/x?y=1".into(),
        host: Some(b"example.test".to_vec()),
        headers: forged
            .iter()
            .map(|h| (h.to_string(), b"forged".to_vec()))
            .collect(),
        client: ([127, 0, 0, 1], 5000),
    };
    wasm_visits_fuzz::request(&case);
}
