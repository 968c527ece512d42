//! `spin.toml` (spin_manifest_version = 2), read with the rules of Spin 3.6.3: the schema of
//! `crates/manifest/src/schema/v2.rs` (unknown fields refused at every level, ids validated as
//! they are read), then the checks Spin makes while loading and starting the app (loader,
//! variables, key-value and SQLite factors, HTTP trigger, router). What visits-runner does not
//! implement (other triggers, remote sources, files, ...) is refused with a clear error rather
//! than ignored. Every error names the file, and the line and column when it has one.
//! The rule list with Spin's sources: tests/spin-conformance/README.md.

use crate::allowed_hosts::{AllowedHost, AllowedHosts, HostEntry};
use crate::ids::{KebabId, Label, LowerSnakeId};
use crate::routes::{Route, Router};
use crate::variables::{self, Template, VariableDecl};
use anyhow::{anyhow, Context as _, Result};
use serde::{de::Error as _, Deserialize, Deserializer};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// `spin_manifest_version` alone, read first, as Spin's `ManifestVersion::detect` does.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(alias = "spin_version")]
    spin_manifest_version: toml::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[allow(dead_code)] // checked by VersionProbe
    spin_manifest_version: toml::Value,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<LowerSnakeId, VariableDecl>,
    trigger: BTreeMap<TriggerType, Vec<HttpTrigger>>,
    #[serde(default)]
    component: BTreeMap<KebabId, RawComponent>,
}

// Fields Spin accepts and visits-runner has no use for are parsed (so their shape is checked),
// not read.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Application {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    targets: Vec<TargetRef>,
    /// `[application.trigger.<type>]`: settings per trigger type.
    #[serde(default)]
    trigger: BTreeMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum TargetRef {
    Name(String),
    Registry { registry: String, id: String },
    File { path: String },
}

/// `[application.trigger.http]` (Spin: `HttpTrigger::validate_app`, crates/trigger-http/src/lib.rs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpAppSettings {
    base: Option<String>,
}

/// The key of `[[trigger.<type>]]`. Spin runs other types through trigger plugins;
/// visits-runner is an HTTP host only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct TriggerType;

impl TryFrom<String> for TriggerType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "http" {
            Ok(Self)
        } else {
            Err(format!("trigger type {s:?} is not supported by visits-runner, which runs only [[trigger.http]] (stricter than Spin, which runs other trigger types through plugins)"))
        }
    }
}

/// One `[[trigger.http]]` (Spin: `Trigger` in schema/v2.rs, then `HttpTriggerConfig` in
/// crates/http/src/config.rs, which denies unknown fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTrigger {
    #[serde(default)]
    id: String,
    #[serde(default)]
    component: Option<Spanned<ComponentRef>>,
    route: Spanned<RouteCfg>,
    #[serde(default)]
    executor: Option<Spanned<Executor>>,
    #[serde(default)]
    static_response: Option<toml::Value>,
}

/// `component = "<id>"`; Spin also accepts an inline table, which visits-runner refuses.
struct ComponentRef(KebabId);

impl<'de> Deserialize<'de> for ComponentRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => KebabId::try_from(s).map(Self).map_err(D::Error::custom),
            toml::Value::Table(_) => Err(D::Error::custom(
                "inline components (`component = { source = ... }`) are not supported by visits-runner: declare [component.<id>] and refer to it by id",
            )),
            v => Err(D::Error::custom(format!(
                "invalid type: {}, expected a component id",
                v.type_str()
            ))),
        }
    }
}

/// `route = "/path"` or `route = { private = true }` (Spin: `HttpTriggerRouteConfig`,
/// crates/routes/src/lib.rs).
enum RouteCfg {
    Route(String),
    Private(bool),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateEndpoint {
    private: bool,
}

impl<'de> Deserialize<'de> for RouteCfg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Self::Route(s)),
            t @ toml::Value::Table(_) => PrivateEndpoint::deserialize(t)
                .map(|p| Self::Private(p.private))
                .map_err(|e| {
                    D::Error::custom(format!(
                        "route must be a string pattern or '{{ private = true }}': {}",
                        e.message()
                    ))
                }),
            v => Err(D::Error::custom(format!(
                "route must be a string pattern or '{{ private = true }}', not {}",
                v.type_str()
            ))),
        }
    }
}

/// Spin: `HttpExecutorType` (crates/http/src/config.rs).
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "type")]
enum Executor {
    #[serde(alias = "spin")]
    Http,
    Wagi(WagiConfig),
    Wasip3Unstable,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WagiConfig {
    #[serde(default)]
    entrypoint: Option<String>,
    #[serde(default)]
    argv: Option<String>,
}

/// Spin: `ComponentSource` (crates/manifest/src/schema/common.rs).
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields, untagged)]
enum ComponentSource {
    Local(String),
    Remote {
        url: String,
        digest: String,
    },
    Registry {
        registry: Option<String>,
        package: String,
        version: String,
    },
}

/// Spin: `Component` (schema/v2.rs).
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: Spanned<ComponentSource>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    variables: BTreeMap<LowerSnakeId, Spanned<Template>>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<HostEntry>>,
    #[serde(default)]
    key_value_stores: Vec<Spanned<Label>>,
    #[serde(default)]
    sqlite_databases: Vec<Spanned<Label>>,
    #[serde(default)]
    ai_models: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    targets: Option<Vec<TargetRef>>,
    #[serde(default)]
    build: Option<BuildConfig>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
    #[serde(default)]
    dependencies_inherit_configuration: bool,
    #[serde(default)]
    dependencies: Option<Spanned<toml::Table>>,
}

/// Spin: `ComponentBuildConfig` (schema/common.rs); `spin build`'s business, checked only.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildConfig {
    command: Commands,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<String>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(untagged)]
enum Commands {
    One(String),
    Many(Vec<String>),
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

/// The manifest's text and name, to report errors at `file:line:column`.
struct Src<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Src<'_> {
    fn at(&self, span: Range<usize>, msg: impl Display) -> anyhow::Error {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        let src: String = self
            .text
            .lines()
            .nth(line - 1)
            .unwrap_or("")
            .trim()
            .chars()
            .take(120)
            .collect();
        anyhow!(
            "invalid manifest {}:{line}:{col}: {msg} (at `{src}`)",
            self.origin
        )
    }

    fn err(&self, msg: impl Display) -> anyhow::Error {
        anyhow!("invalid manifest {}: {msg}", self.origin)
    }

    fn toml(&self, e: toml::de::Error) -> anyhow::Error {
        let msg = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => self.at(span, msg),
            None => self.err(msg),
        }
    }
}

/// Where an optional setting asks for something (present and not empty).
fn asked_for<T>(v: &Option<Spanned<T>>, is_empty: impl Fn(&T) -> bool) -> Option<Range<usize>> {
    v.as_ref()
        .filter(|v| !is_empty(v.get_ref()))
        .map(Spanned::span)
}

pub fn load(
    path: &Path,
    cli_vars: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<App> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse(&text, &dir, &path.display().to_string(), cli_vars, env)
}

pub fn parse(
    text: &str,
    dir: &Path,
    origin: &str,
    cli_vars: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<App> {
    let src = Src { origin, text };
    let probe: VersionProbe = toml::from_str(text).map_err(|e| src.toml(e))?;
    match &probe.spin_manifest_version {
        toml::Value::Integer(2) => {}
        toml::Value::String(s) if s == "1" => {
            return Err(src.err("spin_manifest_version \"1\" (manifest v1) is not supported by visits-runner: run `spin doctor` to upgrade it to version 2 (stricter than Spin, which still reads v1)"));
        }
        v => {
            return Err(src.err(format!(
                "invalid manifest version: {v} (write `spin_manifest_version = 2`, an integer)"
            )))
        }
    }
    let raw: RawManifest = toml::from_str(text).map_err(|e| src.toml(e))?;

    for (kind, settings) in &raw.application.trigger {
        if kind != "http" {
            continue; // settings of a trigger type the app does not use: Spin ignores them
        }
        let at = settings.span();
        let s = HttpAppSettings::deserialize(toml::Value::Table(settings.get_ref().clone()))
            .map_err(|e| {
                src.at(
                    at.clone(),
                    format!("invalid metadata value for \"http\": {}", e.message()),
                )
            })?;
        match s.base.as_deref() {
            None => {}
            Some("/") => eprintln!("warning: This application has the deprecated trigger 'base' set to the default value '/'. This may be an error in the future!"),
            Some(_) => return Err(src.at(at, "This application is using the deprecated trigger 'base' field. The base must be prepended to each [[trigger.http]]'s 'route'.")),
        }
    }

    let declared = |v: &str| raw.variables.keys().any(|k| k.as_str() == v);
    let unknown = |t: &Template| t.unknown_variables(declared).next().map(str::to_string);
    for (id, c) in &raw.component {
        let at_source = c.source.span();
        match c.source.get_ref() {
            ComponentSource::Local(_) => {}
            _ => return Err(src.at(at_source, format!("component `{id}`: remote and registry sources are not supported by visits-runner: build or download the .wasm and give its path (stricter than Spin)"))),
        }
        if let Some(span) = asked_for(&c.allowed_http_hosts, Vec::is_empty) {
            return Err(src.at(span, format!("component `{id}`: `allowed_http_hosts` is deprecated and not supported by visits-runner: use `allowed_outbound_hosts` (stricter than Spin, which converts it with a warning)")));
        }
        for (what, span) in [
            ("`files` are", asked_for(&c.files, Vec::is_empty)),
            ("`ai_models` are", asked_for(&c.ai_models, Vec::is_empty)),
            (
                "component `dependencies` are",
                asked_for(&c.dependencies, toml::Table::is_empty),
            ),
        ] {
            if let Some(span) = span {
                return Err(src.at(
                    span,
                    format!("component `{id}`: {what} not supported by visits-runner (stricter than Spin)"),
                ));
            }
        }
        for (name, t) in &c.variables {
            if let Some(v) = unknown(t.get_ref()) {
                return Err(src.at(t.span(), format!("component `{id}` variable `{name}`: invalid variable template: unknown variable {v:?} (a template may only name variables declared in [variables])")));
            }
        }
        for h in &c.allowed_outbound_hosts {
            if let Some(v) = unknown(&h.get_ref().template) {
                return Err(src.at(h.span(), format!("component `{id}`: allowed_outbound_hosts entry {:?}: unknown variable {v:?} (stricter than Spin, which starts and then fails every outbound request of this component)", h.get_ref().template.as_str())));
            }
        }
        // visits-runner has no runtime config file: "default" is the only store and database
        // (Spin: crates/factor-key-value/src/lib.rs, crates/factor-sqlite/src/lib.rs).
        for l in &c.key_value_stores {
            if l.get_ref().as_str() != "default" {
                return Err(src.at(l.span(), format!("unknown key_value_stores label {:?} for component {:?}: only \"default\" is defined without a runtime config", l.get_ref().as_str(), id.as_str())));
            }
        }
        for l in &c.sqlite_databases {
            if l.get_ref().as_str() != "default" {
                return Err(src.at(l.span(), format!("One or more components use SQLite databases which are not defined: component {id} uses database '{}' (only \"default\" is defined without a runtime config)", l.get_ref().as_str())));
            }
        }
    }

    // Triggers and routes.
    let triggers = raw.trigger.into_values().next().unwrap_or_default();
    if triggers.is_empty() {
        return Err(
            src.err("No triggers in app: add a [[trigger.http]] with a route and a component")
        );
    }
    let mut routes: Vec<Route> = Vec::new();
    for (i, t) in triggers.iter().enumerate() {
        let comp = t
            .component
            .as_ref()
            .map(|c| (c.get_ref().0.as_str(), c.span()));
        let id = match (&t.id, &comp) {
            (id, _) if !id.is_empty() => id.clone(),
            (_, Some((c, _))) => format!("{c}-http-trigger"),
            _ => format!("http-trigger{}", i + 1),
        };
        let comp = match (comp, &t.static_response) {
            (None, None) => return Err(src.at(t.route.span(), format!("Triggers must specify either component or static_response - {id} has neither"))),
            (Some(_), Some(_)) => return Err(src.at(t.route.span(), format!("Triggers must specify either component or static_response - {id} has both"))),
            (None, Some(_)) => return Err(src.at(t.route.span(), format!("trigger {id}: static_response is not supported by visits-runner (stricter than Spin)"))),
            (Some(c), None) => c,
        };
        let (comp, comp_span) = comp;
        if !raw.component.keys().any(|k| k.as_str() == comp) {
            return Err(src.at(
                comp_span,
                format!("no such component {comp:?}: declare [component.{comp}]"),
            ));
        }
        if let Some(e) = &t.executor {
            if !matches!(e.get_ref(), Executor::Http) {
                return Err(src.at(e.span(), format!("trigger {id}: only the default `http` (`spin`) executor is supported by visits-runner (stricter than Spin)")));
            }
        }
        match t.route.get_ref() {
            RouteCfg::Route(r) => {
                routes.push(Route::parse("/", r, comp).map_err(|e| src.at(t.route.span(), e))?)
            }
            RouteCfg::Private(true) => {}
            RouteCfg::Private(false) => {
                return Err(src.at(t.route.span(), format!("route must be a string pattern or '{{ private = true }}': '{comp}' has {{ private = false }}")))
            }
        }
    }
    let (router, replaced) = Router::from_routes(routes);
    if !replaced.is_empty() {
        eprintln!("warning: The following component routes are duplicates and will never be used:");
        for (route, comp, effective) in &replaced {
            eprintln!("warning:   {comp}: {route} (duplicate of {effective})");
        }
    }
    if router
        .routes()
        .iter()
        .any(|r| r.based.starts_with(crate::routes::WELL_KNOWN_PREFIX))
    {
        eprintln!(
            "warning: Routes under {} are handled by the Spin runtime and will never be reached",
            crate::routes::WELL_KNOWN_PREFIX
        );
    }

    // Values: defaults < SPIN_VARIABLE_* < --variable; then templates resolve.
    let app_vars = variables::resolve_app_variables(
        raw.variables.iter().map(|(k, d)| (k.as_str(), d)),
        cli_vars,
        env,
    )
    .map_err(|e| src.err(e))?;
    let component_ids: Vec<String> = raw.component.keys().map(|k| k.to_string()).collect();
    let mut components = BTreeMap::new();
    for (id, c) in raw.component {
        let ComponentSource::Local(path) = c.source.get_ref() else {
            unreachable!("checked above")
        };
        let mut vars = HashMap::new();
        for (name, t) in &c.variables {
            vars.insert(name.to_string(), t.get_ref().resolve(&app_vars)?);
        }
        let mut resolved_hosts = Vec::new();
        for h in &c.allowed_outbound_hosts {
            let t = &h.get_ref().template;
            let r = t.resolve(&app_vars)?;
            if !t.is_literal() {
                AllowedHost::parse(&r).map_err(|e| {
                    src.at(h.span(), format!("component `{id}`: allowed_outbound_hosts template {:?} with the variable values given results in invalid config {r:?}: {e:#}", t.as_str()))
                })?;
            }
            resolved_hosts.push(r);
        }
        let allowed_hosts = AllowedHosts::parse(&resolved_hosts, &component_ids).map_err(|e| {
            src.err(format!(
                "component `{id}`: invalid allowed_outbound_hosts: {e:#}"
            ))
        })?;
        let label = |l: &Spanned<Label>| l.get_ref().as_str().to_string();
        components.insert(
            id.to_string(),
            Component {
                id: id.to_string(),
                source: dir.join(path),
                allowed_hosts,
                key_value_stores: c.key_value_stores.iter().map(label).collect(),
                sqlite_databases: c.sqlite_databases.iter().map(label).collect(),
                environment: c.environment.into_iter().collect(),
                variables: vars,
            },
        );
    }
    Ok(App {
        name: raw.application.name,
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

    fn parse_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<App> {
        parse(text, Path::new("/app"), "spin.toml", &[], env)
    }

    #[test]
    fn good_manifest() {
        let app = parse_str(GOOD, &env).unwrap();
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
        let err = parse_str(GOOD, &|_| None).unwrap_err();
        assert!(format!("{err:#}").contains("token"), "{err:#}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let text = "spin_manifest_version = 2\n[application]\nname = 'x'\n[variables]\nmongo_address_2 = { default = 'a' }\n[[trigger.http]]\nroute = '/'\ncomponent = 'a'\n[component.a]\nsource = 'a.wasm'\n";
        let e = format!("{:#}", parse_str(text, &|_| None).unwrap_err());
        assert!(
            e.starts_with("invalid manifest spin.toml:5:1: '_'-separated words must start with an ASCII letter; got '2'"),
            "{e}"
        );
        assert!(
            e.contains("(at `mongo_address_2 = { default = 'a' }`)"),
            "{e}"
        );
    }

    #[test]
    fn bad_manifests() {
        let head = "spin_manifest_version = 2\n[application]\nname = 'x'\n";
        let tail = "[[trigger.http]]\nroute='/'\ncomponent='a'\n[component.a]\nsource='a.wasm'\n";
        let cases = [
            ("spin_manifest_version = 1\n".to_string(), "invalid manifest version: 1"),
            ("this is not toml".into(), "spin.toml:1:"),
            (format!("{head}[[trigger.http]]\nroute='/'\ncomponent='nope'\n[component.a]\nsource='a.wasm'"), "no such component \"nope\""),
            (format!("{head}{tail}allowed_outbound_hosts=['example.com']"), "scheme"),
            (format!("{head}[variables]\nh={{default='not a host'}}\n{tail}allowed_outbound_hosts=['http://{{{{ h }}}}']"), "results in invalid config"),
            (format!("{head}{tail}[component.a.variables]\nx='{{{{ undeclared }}}}'"), "unknown variable \"undeclared\""),
            (format!("{head}{tail}key_value_stores=['other']"), "unknown key_value_stores label \"other\""),
            (format!("{head}[[trigger.http]]\nroute='/'\ncomponent='a'"), "no such component"),
            (format!("spin_manifest_version = 2\n{tail}"), "missing field `application`"),
            (format!("{head}{tail}colour = 'blue'"), "unknown field `colour`"),
        ];
        for (text, needle) in cases {
            let err = parse_str(&text, &|_| None).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        }
    }
}
