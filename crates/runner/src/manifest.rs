//! `spin.toml` (spin_manifest_version = 2): the subset a Spin HTTP application uses.

use crate::allowed_hosts::AllowedHosts;
use crate::routes::Router;
use crate::variables::{self, Template, VariableDecl};
use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
pub struct RawManifest {
    pub spin_manifest_version: toml::Value,
    #[serde(default)]
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, RawComponent>,
}

// Some fields are only parsed so that the manifest keys are accepted.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
pub struct Application {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub trigger: ApplicationTrigger,
}

#[derive(Debug, Default, Deserialize)]
pub struct ApplicationTrigger {
    #[serde(default)]
    pub http: Option<HttpAppConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HttpAppConfig {
    #[serde(default)]
    pub base: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    #[serde(default)]
    pub id: Option<String>,
    pub route: RouteCfg,
    #[serde(default)]
    pub component: Option<toml::Value>,
    #[serde(default)]
    pub executor: Option<toml::Value>,
    #[serde(default)]
    pub static_response: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteCfg {
    Route(String),
    Private { private: bool },
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SourceCfg {
    Path(String),
    Remote { url: String, digest: String },
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct RawComponent {
    pub source: SourceCfg,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Spin 1.x name; rejected with a clear message.
    #[serde(default)]
    pub allowed_http_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub files: Vec<toml::Value>,
    #[serde(default)]
    pub exclude_files: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub build: Option<toml::Value>,
    #[serde(default)]
    pub tool: Option<toml::Value>,
    #[serde(default)]
    pub dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    pub dependencies: Option<toml::Value>,
}

/// A fully validated component, with variables and allowed hosts resolved.
#[derive(Debug)]
pub struct Component {
    pub id: String,
    pub source: PathBuf,
    pub allowed_hosts: AllowedHosts,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub variables: HashMap<String, String>,
}

#[derive(Debug)]
pub struct App {
    pub name: String,
    pub dir: PathBuf,
    pub router: Router,
    pub components: BTreeMap<String, Component>,
}

fn valid_component_id(id: &str) -> bool {
    // Spin: kebab-case-ish: lowercase letters, digits, '-' and '_', starting with a letter.
    let mut c = id.chars();
    matches!(c.next(), Some('a'..='z'))
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub fn load(
    path: &Path,
    cli_vars: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<App> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    parse(&text, &dir, cli_vars, env)
        .with_context(|| format!("invalid manifest {}", path.display()))
}

pub fn parse(
    text: &str,
    dir: &Path,
    cli_vars: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<App> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim()))?;
    from_raw(raw, dir, cli_vars, env)
}

/// Validate a parsed manifest (from spin.toml, or from a pulled locked app: crate::registry).
pub fn from_raw(
    raw: RawManifest,
    dir: &Path,
    cli_vars: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<App> {
    match &raw.spin_manifest_version {
        toml::Value::Integer(2) => {}
        toml::Value::String(s) if s == "2" => {}
        v => bail!("unsupported spin_manifest_version {v}: only version 2 is supported"),
    }
    if let Some(k) = raw.trigger.other.keys().next() {
        bail!("trigger type {k:?} is not supported: only [[trigger.http]]");
    }
    if raw.trigger.http.is_empty() {
        bail!("the manifest has no [[trigger.http]]");
    }
    let app_vars = variables::resolve_app_variables(&raw.variables, cli_vars, env)?;
    let component_ids: Vec<String> = raw.component.keys().cloned().collect();

    let mut components = BTreeMap::new();
    for (id, c) in &raw.component {
        if !valid_component_id(id) {
            bail!("invalid component id {id:?}: use lowercase letters, digits, '-' and '_'");
        }
        if c.allowed_http_hosts.is_some() {
            bail!("component {id:?}: 'allowed_http_hosts' is not supported in manifest v2; use 'allowed_outbound_hosts'");
        }
        if !c.files.is_empty() {
            bail!("component {id:?}: 'files' is not supported by visits-runner (no filesystem access)");
        }
        if c.dependencies.is_some() {
            bail!("component {id:?}: component 'dependencies' are not supported by visits-runner");
        }
        if !c.ai_models.is_empty() {
            bail!("component {id:?}: 'ai_models' are not supported by visits-runner");
        }
        let source = match &c.source {
            SourceCfg::Path(p) => dir.join(p),
            SourceCfg::Remote { url, .. } => {
                bail!("component {id:?}: remote source {url:?} is not supported; build it locally")
            }
        };
        let variables = variables::resolve_component_variables(id, &c.variables, &app_vars)?;
        // allowed_outbound_hosts: templates over application variables.
        let mut resolved_hosts = Vec::new();
        for h in &c.allowed_outbound_hosts {
            let t = Template::parse(h).map_err(|e| anyhow!("component {id:?}: {e}"))?;
            for v in t.variables() {
                if !app_vars.contains_key(v) {
                    bail!("component {id:?}: allowed_outbound_hosts entry {h:?} refers to undeclared variable {v:?}");
                }
            }
            let r = t.resolve(&app_vars)?;
            if !t.is_literal() {
                crate::allowed_hosts::AllowedHost::parse(&r).with_context(|| {
                    format!("component {id:?}: allowed_outbound_hosts template {h:?} results in invalid entry {r:?}")
                })?;
            }
            resolved_hosts.push(r);
        }
        let allowed_hosts = AllowedHosts::parse(&resolved_hosts, &component_ids)
            .with_context(|| format!("component {id:?}: invalid allowed_outbound_hosts"))?;
        for s in &c.key_value_stores {
            if s != "default" {
                bail!("component {id:?}: key-value store {s:?} is not defined (only \"default\" is available without a runtime config)");
            }
        }
        for s in &c.sqlite_databases {
            if s != "default" {
                bail!("component {id:?}: sqlite database {s:?} is not defined (only \"default\" is available without a runtime config)");
            }
        }
        components.insert(
            id.clone(),
            Component {
                id: id.clone(),
                source,
                allowed_hosts,
                key_value_stores: c.key_value_stores.clone(),
                sqlite_databases: c.sqlite_databases.clone(),
                environment: c.environment.clone().into_iter().collect(),
                variables,
            },
        );
    }

    let mut routes: Vec<(String, String)> = Vec::new();
    for (i, t) in raw.trigger.http.iter().enumerate() {
        let what =
            t.id.clone()
                .unwrap_or_else(|| format!("[[trigger.http]] #{}", i + 1));
        if t.static_response.is_some() {
            bail!("{what}: static_response is not supported by visits-runner");
        }
        if let Some(toml::Value::Table(e)) = &t.executor {
            if e.get("type")
                .and_then(|v| v.as_str())
                .is_some_and(|t| t != "spin")
            {
                bail!("{what}: only the default (spin / wasi-http) executor is supported");
            }
        }
        let comp = match &t.component {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => bail!("{what}: inline components are not supported: declare [component.<id>] and reference it by id"),
            None => bail!("{what}: missing 'component'"),
        };
        if !components.contains_key(&comp) {
            bail!("{what}: trigger refers to component {comp:?}, which is not declared in [component.{comp}]");
        }
        match &t.route {
            RouteCfg::Route(r) => routes.push((r.clone(), comp)),
            RouteCfg::Private { private: true } => {}
            RouteCfg::Private { private: false } => bail!(
                "route must be a string pattern or '{{ private = true }}': component {comp:?} has {{ private = false }}"
            ),
        }
    }
    let base = raw
        .application
        .trigger
        .http
        .as_ref()
        .and_then(|h| h.base.clone())
        .unwrap_or_else(|| "/".into());
    let (router, replaced) =
        Router::build(&base, routes.iter().map(|(r, c)| (r.as_str(), c.as_str())))?;
    for (route, comp) in replaced {
        eprintln!(
            "warning: duplicate route {route:?}: component {comp:?} is not reachable through it"
        );
    }
    Ok(App {
        name: raw.application.name.unwrap_or_else(|| "<unnamed>".into()),
        dir: dir.to_path_buf(),
        router,
        components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
redis_host = { default = "127.0.0.1" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "page"
[[trigger.http]]
route = { private = true }
component = "counter"
[component.page]
source = "page.wasm"
allowed_outbound_hosts = ["http://counter.spin.internal", "redis://{{ redis_host }}:6379"]
[component.page.variables]
greeting = "hi {{ token }}"
[component.page.build]
command = "cargo build"
[component.counter]
source = "c.wasm"
key_value_stores = ["default"]
"#;

    fn env(k: &str) -> Option<String> {
        (k == "SPIN_VARIABLE_TOKEN").then(|| "secret".to_string())
    }

    #[test]
    fn good_manifest() {
        let app = parse(GOOD, Path::new("/app"), &[], &env).unwrap();
        assert_eq!(app.components.len(), 2);
        let page = &app.components["page"];
        assert_eq!(page.source, Path::new("/app/page.wasm"));
        assert_eq!(page.variables["greeting"], "hi secret");
        assert!(page
            .allowed_hosts
            .allows_url("redis://127.0.0.1:6379", "redis"));
        assert!(page
            .allowed_hosts
            .allows_url("http://counter.spin.internal/x", "http"));
        assert_eq!(app.router.route("/x").unwrap().component, "page");
        // the private component has no public route
        assert_eq!(app.router.routes().len(), 1);
    }

    #[test]
    fn missing_required_variable() {
        let err = parse(GOOD, Path::new("/app"), &[], &|_| None).unwrap_err();
        assert!(format!("{err:#}").contains("token"), "{err:#}");
    }

    #[test]
    fn bad_manifests() {
        let cases = [
            ("spin_manifest_version = 1\n[[trigger.http]]\nroute='/'\ncomponent='a'\n[component.a]\nsource='a.wasm'", "version"),
            ("this is not toml", ""),
            ("spin_manifest_version = 2\n[[trigger.http]]\nroute='/'\ncomponent='nope'\n[component.a]\nsource='a.wasm'", "nope"),
            ("spin_manifest_version = 2\n[[trigger.http]]\nroute='/'\ncomponent='a'\n[component.a]\nsource='a.wasm'\nallowed_outbound_hosts=['example.com']", "scheme"),
            ("spin_manifest_version = 2\n[variables]\nh={default='not a host'}\n[[trigger.http]]\nroute='/'\ncomponent='a'\n[component.a]\nsource='a.wasm'\nallowed_outbound_hosts=['http://{{ h }}']", "results in invalid entry"),
            ("spin_manifest_version = 2\n[[trigger.http]]\nroute='/'\ncomponent='a'\n[component.a]\nsource='a.wasm'\n[component.a.variables]\nx='{{ undeclared }}'", "undeclared"),
            ("spin_manifest_version = 2\n[[trigger.http]]\nroute='/'\ncomponent='a'\n[component.a]\nsource='a.wasm'\nkey_value_stores=['other']", "other"),
            ("spin_manifest_version = 2\n[[trigger.http]]\nroute='/'\ncomponent='a'", "not declared"),
        ];
        for (text, needle) in cases {
            let err = parse(text, Path::new("."), &[], &|_| None).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        }
    }
}
