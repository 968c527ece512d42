//! Least privilege, checked on the built artifacts: each component imports only the host
//! interfaces it needs (Spin grants nothing a component does not import, but an import that
//! should not be there is a design smell and a larger attack surface).

use std::collections::BTreeSet;

use visits_e2e::repo_root;

/// The interfaces (`wasi:http/outgoing-handler@0.2.0`, ...) a component imports: the top-level
/// imports of a wasip2 component, or, for a wasip1 core module (Debian's fallback toolchain),
/// its import modules.
fn imports(component: &str) -> BTreeSet<String> {
    use wasmparser::Payload;
    let path = repo_root().join(format!("target/wasm32-wasip2/wasm/{component}.wasm"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; build with scripts/build-wasm.sh", path.display()));
    let mut out = BTreeSet::new();
    // Nested modules and components (depth > 0) import from their siblings, not from the host.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.expect("valid wasm") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    out.insert(import.expect("valid import").name.name.to_string());
                }
            }
            Payload::ImportSection(section) if depth == 0 => {
                for import in section.into_imports() {
                    out.insert(import.expect("valid import").module.to_string());
                }
            }
            _ => {}
        }
    }
    println!("{component} ({} bytes) imports {out:#?}", bytes.len());
    out
}

fn assert_only(component: &str, required: &[&str], forbidden_prefixes: &[&str]) {
    let got = imports(component);
    // A prefix, so `wasi:http/outgoing-handler@0.2` matches whichever 0.2.x patch release the
    // toolchain's WASI adapter names (Rust 1.95's wasip2 std imports 0.2.12; hosts match any
    // semver-compatible 0.2.x).
    for r in required {
        assert!(
            got.iter().any(|g| g.starts_with(r)),
            "{component} should import {r}; imports {got:?}"
        );
    }
    for module in &got {
        for f in forbidden_prefixes {
            assert!(
                !module.starts_with(f),
                "{component} must not import {module}"
            );
        }
    }
}

#[test]
fn page_imports_outbound_http_and_variables_only() {
    assert_only(
        "page",
        &[
            "wasi:http/outgoing-handler@0.2",
            "fermyon:spin/variables@2.0.0",
        ],
        &[
            "fermyon:spin/redis",
            "fermyon:spin/sqlite",
            "fermyon:spin/key-value",
            "wasi:keyvalue",
            "wasi:sockets",
        ],
    );
}

#[test]
fn counter_imports_redis_and_keyvalue_but_no_network() {
    assert_only(
        "counter",
        &[
            "fermyon:spin/redis@2.0.0",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "fermyon:spin/variables@2.0.0",
        ],
        &[
            "wasi:http/outgoing-handler",
            "wasi:sockets",
            "fermyon:spin/sqlite",
        ],
    );
}

#[test]
fn recorder_imports_sockets_sqlite_and_keyvalue_but_no_http_or_redis() {
    assert_only(
        "recorder",
        &[
            "fermyon:spin/sqlite@2.0.0",
            "wasi:sockets/tcp@0.2",
            "wasi:keyvalue/store@0.2.0-draft2",
            "fermyon:spin/variables@2.0.0",
        ],
        &[
            "wasi:http/outgoing-handler",
            "fermyon:spin/redis",
            "wasi:keyvalue/atomics",
            "wasi:sockets/ip-name-lookup",
        ],
    );
}
