//! `visits-runner registry push|pull` and `visits-runner up -f <reference>`: Spin's OCI artifact,
//! as `spin registry push` writes it and `spin up -f <reference>` / containerd-shim-spin run it.
//!
//! The format, read from Spin v3.6.3 (not copied):
//! - crates/oci/src/client.rs (`push_locked_core`, `assemble_layers_composed`, `all_annotations`,
//!   `pull`): one layer per component (`application/vnd.wasm.content.layer.v1+wasm`, the Wasm
//!   bytes, deduplicated), then the locked app as the last layer
//!   (`application/vnd.fermyon.spin.application.v1+config`, compact JSON); a standard OCI image
//!   config (`architecture: wasm`, `os: wasip1`, label `com.fermyon.spin.lockedAppDigest`); OCI
//!   manifest annotations `org.opencontainers.image.{authors,title,description,version,created}`
//!   inferred from `[application]`, explicit `--annotation`s winning.
//! - crates/locked-app/src/locked.rs (`LockedApp` and friends: field order, `spin_lock_version`
//!   1 only when something must be understood) and crates/loader/src/local.rs (what goes into
//!   the locked app from spin.toml: metadata, variables, triggers with generated ids, component
//!   metadata, `local_service_chaining` host requirement for `*.spin.internal` hosts).
//!
//! Static files (`files`, pushed as data or `tar+gzip` archive layers) and component
//! dependencies are refused, as `visits-runner up` refuses them.

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::config::{Architecture, ConfigFile, Os};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use spin_manifest::allowed_hosts;
use spin_manifest::manifest::{self, App};
use spin_manifest::variables::VariableDecl;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Media types and label of Spin v3.6.3, crates/oci/src/client.rs.
pub const SPIN_APPLICATION_MEDIA_TYPE: &str = "application/vnd.fermyon.spin.application.v1+config";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// A Wasm layer pushed by `wkg`; Spin reads it as Wasm too.
const WASM_LAYER_MEDIA_TYPE_WKG: &str = "application/wasm";
const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";
const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Spin inlines content up to this size into the locked app instead of pushing a layer.
const INLINE_MAX_SIZE: usize = 128;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Push the application as a Spin OCI artifact, as `spin registry push` does.
    Push(PushArgs),
    /// Pull a Spin OCI artifact into the local cache, as `spin registry pull` does.
    Pull(PullArgs),
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// Registry reference, e.g. 127.0.0.1:5000/wasm-visits:v1.
    reference: String,
    /// The application manifest, or a directory containing spin.toml.
    #[arg(
        short = 'f',
        long = "from",
        visible_alias = "file",
        default_value = "spin.toml"
    )]
    file: PathBuf,
    /// Plain HTTP (a local registry), as Spin's --insecure.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// An OCI manifest annotation (wins over the inferred ones), repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = spin_manifest::variables::parse_kv)]
    annotations: Vec<(String, String)>,
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// Registry reference (tag or @sha256: digest).
    reference: String,
    /// Plain HTTP (a local registry), as Spin's --insecure.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Registry cache [default: $XDG_CACHE_HOME/visits-runner/registry].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Push(a) => {
            let file = if a.file.is_dir() {
                a.file.join("spin.toml")
            } else {
                a.file
            };
            let annotations = a.annotations.into_iter().collect();
            let digest = push(&file, &a.reference, a.insecure, annotations).await?;
            println!("Pushed with digest {digest}");
        }
        Cmd::Pull(a) => {
            let cache = Cache::new(a.cache_dir)?;
            let pulled = pull(&a.reference, a.insecure, &cache).await?;
            println!(
                "Pulled {}@{} into {}",
                a.reference,
                pulled.digest,
                cache.root.display()
            );
        }
    }
    Ok(())
}

// ---- the locked app (Spin v3.6.3 crates/locked-app/src/locked.rs); maps are BTreeMaps
// because Spin's serde_json maps are sorted, field order is Spin's struct order.

#[derive(Serialize, Deserialize, Debug)]
pub struct LockedApp {
    pub spin_lock_version: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, LockedVariable>,
    pub triggers: Vec<LockedTrigger>,
    pub components: Vec<LockedComponent>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct LockedVariable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct LockedTrigger {
    pub id: String,
    pub trigger_type: String,
    pub trigger_config: Value,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct LockedComponent {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    pub source: LockedSource,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct LockedSource {
    pub content_type: String,
    #[serde(flatten)]
    pub content: ContentRef,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct ContentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// base64, for content of at most 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// JSON of a TOML value with every object's keys sorted, as Spin's (sorted) maps serialize.
fn sorted_json(v: &toml::Value) -> Result<Value> {
    Ok(match v {
        toml::Value::Table(t) => {
            let sorted: BTreeMap<&String, Value> = t
                .iter()
                .map(|(k, v)| Ok((k, sorted_json(v)?)))
                .collect::<Result<_>>()?;
            serde_json::to_value(sorted)?
        }
        toml::Value::Array(a) => Value::Array(a.iter().map(sorted_json).collect::<Result<_>>()?),
        other => serde_json::to_value(other)?,
    })
}

fn strings(t: &toml::Table, key: &str) -> Result<Vec<String>> {
    match t.get(key) {
        None => Ok(vec![]),
        Some(v) => v
            .clone()
            .try_into()
            .with_context(|| format!("{key:?} must be a list of strings")),
    }
}

fn string_map(t: &toml::Table, key: &str) -> Result<BTreeMap<String, String>> {
    match t.get(key) {
        None => Ok(BTreeMap::new()),
        Some(v) => v
            .clone()
            .try_into()
            .with_context(|| format!("{key:?} must be a table of strings")),
    }
}

/// `scheme://<x>.spin.internal[:port]` (or `*.spin.internal`): Spin then marks the component as
/// requiring local service chaining.
fn is_service_chaining_host(entry: &str) -> bool {
    entry
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
        .and_then(allowed_hosts::service_chaining_target)
        .is_some()
}

/// spin.toml -> the locked app Spin pushes, plus one Wasm layer per component (in manifest
/// order, deduplicated). Component sources become content digests.
pub fn lock(manifest_path: &Path) -> Result<(LockedApp, Vec<ImageLayer>)> {
    // Validate as `up` would (same errors); then read the document in its own order, which is
    // the order Spin keeps for triggers and components.
    let env = |k: &str| std::env::var(k).ok();
    manifest::load(manifest_path, &[], &env)?;
    let text = std::fs::read_to_string(manifest_path)?;
    let doc: toml::Table = toml::from_str(&text)?;
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    let table = |v: Option<&toml::Value>| -> toml::Table {
        v.and_then(|v| v.as_table()).cloned().unwrap_or_default()
    };

    let application = table(doc.get("application"));
    let mut metadata = BTreeMap::new();
    for key in ["name", "version", "description"] {
        if let Some(s) = application.get(key).and_then(|v| v.as_str()) {
            if !s.is_empty() {
                metadata.insert(key.to_string(), Value::from(s));
            }
        }
    }
    let authors = strings(&application, "authors")?;
    if !authors.is_empty() {
        metadata.insert("authors".into(), Value::from(authors));
    }
    let global = table(application.get("trigger"));
    metadata.insert(
        "triggers".into(),
        sorted_json(&toml::Value::Table(global.clone()))?,
    );
    let triggers_doc = table(doc.get("trigger"));
    if triggers_doc.len() == 1 {
        let (ty, _) = triggers_doc.iter().next().expect("one trigger type");
        let mut single = table(global.get(ty));
        single.insert("type".into(), ty.clone().into());
        metadata.insert("trigger".into(), sorted_json(&toml::Value::Table(single))?);
    }

    let variables = table(doc.get("variables"))
        .iter()
        .map(|(name, v)| {
            let d: VariableDecl = v.clone().try_into()?;
            let var = LockedVariable {
                description: d.description,
                default: d.default,
                secret: d.secret,
            };
            Ok((name.clone(), var))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;

    // Trigger ids: explicit, else "<component>-<type>-trigger", else "<type>-trigger<n>".
    let mut taken: Vec<String> = Vec::new();
    for list in triggers_doc.values() {
        for t in list.as_array().into_iter().flatten() {
            if let Some(id) = t.get("id").and_then(|v| v.as_str()) {
                taken.push(id.to_string());
            }
        }
    }
    let mut triggers = Vec::new();
    for (ty, list) in &triggers_doc {
        let mut counter = 1;
        for t in list.as_array().into_iter().flatten() {
            let t = t.as_table().context("a trigger must be a table")?;
            let component = t
                .get("component")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            let id = match t.get("id").and_then(|v| v.as_str()) {
                Some(id) if !id.is_empty() => id.to_string(),
                _ => {
                    let natural = component.as_ref().map(|c| format!("{c}-{ty}-trigger"));
                    match natural.filter(|n| !taken.contains(n)) {
                        Some(n) => n,
                        None => loop {
                            let n = format!("{ty}-trigger{counter}");
                            counter += 1;
                            if !taken.contains(&n) {
                                break n;
                            }
                        },
                    }
                }
            };
            taken.push(id.clone());
            let mut config = t.clone();
            config.remove("id");
            config.remove("components");
            if let Some(c) = component {
                config.insert("component".into(), c.into());
            }
            triggers.push(LockedTrigger {
                id,
                trigger_type: ty.clone(),
                trigger_config: sorted_json(&toml::Value::Table(config))?,
            });
        }
    }

    let mut layers: Vec<ImageLayer> = Vec::new();
    let mut components = Vec::new();
    for (id, c) in table(doc.get("component")) {
        let c = c.as_table().context("a component must be a table")?;
        let id = &id;
        ensure!(
            c.get("files").is_none() && c.get("dependencies").is_none(),
            "component {id:?}: 'files' and 'dependencies' are not supported"
        );
        let hosts = strings(c, "allowed_outbound_hosts")?;
        let mut meta = BTreeMap::new();
        if let Some(d) = c
            .get("description")
            .and_then(|v| v.as_str())
            .filter(|d| !d.is_empty())
        {
            meta.insert("description".into(), Value::from(d));
        }
        for (key, from) in [
            ("allowed_outbound_hosts", "allowed_outbound_hosts"),
            ("key_value_stores", "key_value_stores"),
            ("databases", "sqlite_databases"),
            ("ai_models", "ai_models"),
        ] {
            let list = strings(c, from)?;
            if !list.is_empty() {
                meta.insert(key.into(), Value::from(list));
            }
        }
        if let Some(build) = c.get("build").and_then(|v| v.as_table()) {
            let mut build = build.clone();
            if build
                .get("watch")
                .and_then(|w| w.as_array())
                .is_some_and(|w| w.is_empty())
            {
                build.remove("watch");
            }
            meta.insert("build".into(), sorted_json(&toml::Value::Table(build))?);
        }
        let source = c.get("source").and_then(|v| v.as_str()).with_context(|| {
            format!("component {id:?}: only a local file 'source' can be pushed")
        })?;
        let path = dir.join(source);
        let wasm = std::fs::read(&path)
            .with_context(|| format!("component {id:?}: cannot read {}", path.display()))?;
        // Spin composes before pushing, which turns a core module into a component.
        let wasm = crate::runtime::componentize(&wasm)
            .with_context(|| format!("component {id:?}: {} is not valid Wasm", path.display()))?;
        let layer = ImageLayer::new(wasm, WASM_LAYER_MEDIA_TYPE.to_string(), None);
        let content = content_ref(&layer.data);
        if !layers.contains(&layer) {
            layers.push(layer);
        }
        let mut host_requirements = BTreeMap::new();
        if hosts.iter().any(|h| is_service_chaining_host(h)) {
            host_requirements.insert("local_service_chaining".into(), Value::from("required"));
        }
        components.push(LockedComponent {
            id: id.clone(),
            metadata: meta,
            source: LockedSource {
                content_type: "application/wasm".into(),
                content,
            },
            env: string_map(c, "environment")?,
            files: vec![],
            config: string_map(c, "variables")?,
            dependencies: BTreeMap::new(),
            host_requirements,
        });
    }
    let must_understand: Vec<String> = if components.iter().any(|c| !c.host_requirements.is_empty())
    {
        vec!["component_host_requirements".into()]
    } else {
        vec![]
    };
    let locked = LockedApp {
        spin_lock_version: u32::from(!must_understand.is_empty()),
        must_understand,
        metadata,
        host_requirements: BTreeMap::new(),
        variables,
        triggers,
        components,
    };
    Ok((locked, layers))
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn content_ref(data: &[u8]) -> ContentRef {
    use base64::Engine as _;
    ContentRef {
        source: None,
        inline: (data.len() <= INLINE_MAX_SIZE)
            .then(|| base64::engine::general_purpose::STANDARD.encode(data)),
        digest: Some(sha256_digest(data)),
    }
}

/// Spin's inferred annotations (client.rs `all_annotations`); explicit ones win.
fn annotations(
    locked: &LockedApp,
    mut explicit: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let meta = |k: &str| {
        locked
            .metadata
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let authors = locked
        .metadata
        .get("authors")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|a| !a.is_empty());
    let created = chrono::Utc::now().to_rfc3339();
    for (key, value) in [
        ("org.opencontainers.image.authors", authors),
        ("org.opencontainers.image.title", meta("name")),
        ("org.opencontainers.image.description", meta("description")),
        ("org.opencontainers.image.version", meta("version")),
        ("org.opencontainers.image.created", Some(created)),
    ] {
        if let Some(v) = value {
            explicit.entry(key.to_string()).or_insert(v);
        }
    }
    explicit
}

/// The OCI config Spin writes: wasm/wasip1, labelled with the locked app's digest so that two
/// apps never share an image id.
fn oci_config(locked_digest: &str) -> Result<Config> {
    let labels = [(
        LOCKED_APP_DIGEST_LABEL.to_string(),
        locked_digest.to_string(),
    )]
    .into();
    let file = ConfigFile {
        architecture: Architecture::Wasm,
        os: Os::Other("wasip1".into()),
        config: Some(oci_client::config::Config {
            labels: Some(labels),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Config::oci_v1_from_config_file(file, None)?)
}

fn client(insecure: bool) -> Client {
    Client::new(ClientConfig {
        protocol: if insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        ..Default::default()
    })
}

fn parse_reference(reference: &str) -> Result<Reference> {
    reference
        .parse()
        .map_err(|e| anyhow!("invalid registry reference {reference:?}: {e}"))
}

/// rustls needs a process-wide crypto provider; reqwest is built without one (ring is already
/// in the tree through the native edition's MongoDB driver).
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Push spin.toml's application; returns the manifest digest.
pub async fn push(
    manifest_path: &Path,
    reference: &str,
    insecure: bool,
    explicit_annotations: BTreeMap<String, String>,
) -> Result<String> {
    install_crypto_provider();
    let reference = parse_reference(reference)?;
    let (locked, mut layers) = lock(manifest_path)?;
    let annotations = annotations(&locked, explicit_annotations);
    let locked_layer = ImageLayer::new(
        serde_json::to_vec(&locked)?,
        SPIN_APPLICATION_MEDIA_TYPE.to_string(),
        None,
    );
    let config = oci_config(&locked_layer.sha256_digest())?;
    layers.push(locked_layer);
    let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    let response = client(insecure)
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .with_context(|| format!("cannot push to {reference}"))?;
    // ".../v2/<name>/manifests/sha256:..." (Spin: client.rs digest_from_url)
    response
        .manifest_url
        .rsplit('/')
        .next()
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "the registry did not return the digest ({})",
                response.manifest_url
            )
        })
}

/// Content-addressed store of pulled blobs: `<root>/blobs/sha256/<hex>`, manifests included
/// (their digest is the hash of their bytes), so a reference by digest needs no network once
/// pulled.
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    pub fn new(dir: Option<PathBuf>) -> Result<Self> {
        let root = match dir {
            Some(d) => d,
            None => std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .context("cannot find a cache directory: set XDG_CACHE_HOME or HOME, or pass --cache-dir")?
                .join("visits-runner")
                .join("registry"),
        };
        std::fs::create_dir_all(root.join("blobs/sha256"))
            .with_context(|| format!("cannot create the registry cache {}", root.display()))?;
        Ok(Self { root })
    }

    fn path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("unsupported digest {digest:?} (only sha256)"))?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    fn get(&self, digest: &str) -> Result<Option<PathBuf>> {
        let p = self.path(digest)?;
        Ok(p.exists().then_some(p))
    }

    /// Store bytes under their digest, refusing content that does not match it.
    fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf> {
        let actual = sha256_digest(bytes);
        ensure!(
            actual == digest,
            "content of {digest} has digest {actual}: refusing it"
        );
        let p = self.path(digest)?;
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &p)?;
        Ok(p)
    }
}

pub struct Pulled {
    pub digest: String,
    pub locked: LockedApp,
}

/// Pull a Spin artifact (manifest, locked app, Wasm layers) into the cache, fetching only
/// blobs not already there.
pub async fn pull(reference: &str, insecure: bool, cache: &Cache) -> Result<Pulled> {
    install_crypto_provider();
    let r = parse_reference(reference)?;
    let client = client(insecure);
    let auth = RegistryAuth::Anonymous;
    let cached = match r.digest() {
        Some(d) => cache.get(d)?.map(|p| (std::fs::read(p), d.to_string())),
        None => None,
    };
    let (manifest_bytes, digest) = match cached {
        Some((bytes, d)) => (bytes?, d),
        None => {
            let (bytes, d) = client
                .pull_manifest_raw(
                    &r,
                    &auth,
                    &[OCI_MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE],
                )
                .await
                .with_context(|| format!("cannot pull the manifest of {reference}"))?;
            cache.put(&d, &bytes)?;
            (bytes.to_vec(), d)
        }
    };
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
        .with_context(|| format!("{reference}: not an OCI image manifest"))?;
    // Older Spin versions pushed the locked app as the manifest's config.
    let locked_desc = manifest
        .layers
        .iter()
        .find(|l| l.media_type == SPIN_APPLICATION_MEDIA_TYPE)
        .or((manifest.config.media_type == SPIN_APPLICATION_MEDIA_TYPE).then_some(&manifest.config))
        .with_context(|| {
            format!(
                "{reference} is not a Spin application: no {SPIN_APPLICATION_MEDIA_TYPE} layer (config {}, layers {:?})",
                manifest.config.media_type,
                manifest.layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>()
            )
        })?;
    let wanted: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| {
            matches!(
                l.media_type.as_str(),
                WASM_LAYER_MEDIA_TYPE | WASM_LAYER_MEDIA_TYPE_WKG | SPIN_APPLICATION_MEDIA_TYPE
            )
        })
        .chain(std::iter::once(locked_desc))
        .collect();
    let mut fetches = tokio::task::JoinSet::new();
    for d in wanted {
        if cache.get(&d.digest)?.is_some() {
            continue;
        }
        let (client, r, d) = (client.clone(), r.clone(), d.clone());
        fetches.spawn(async move {
            let mut bytes = Vec::with_capacity(usize::try_from(d.size).unwrap_or(0));
            client
                .pull_blob(&r, &d, &mut bytes)
                .await
                .with_context(|| format!("cannot pull blob {}", d.digest))?;
            anyhow::Ok((d.digest, bytes))
        });
    }
    while let Some(res) = fetches.join_next().await {
        let (d, bytes) = res??;
        cache.put(&d, &bytes)?;
    }
    let locked_bytes = std::fs::read(cache.path(&locked_desc.digest)?)?;
    let locked: LockedApp = serde_json::from_slice(&locked_bytes)
        .with_context(|| format!("{reference}: invalid locked application"))?;
    Ok(Pulled { digest, locked })
}

/// The locked app as a spin.toml (component sources: cached blobs), so that a pulled app goes
/// through exactly the validation of a local one (spin_manifest::manifest::parse).
fn to_manifest_toml(locked: LockedApp, cache: &Cache) -> Result<String> {
    use toml::{Table, Value as T};
    if let Some(k) = locked.host_requirements.keys().next() {
        bail!("the application requires {k:?}, which visits-runner does not support");
    }
    let json_to_toml = |v: &Value| -> Result<T> { Ok(T::try_from(v)?) };
    let mut doc = Table::new();
    doc.insert("spin_manifest_version".into(), T::Integer(2));
    let mut application = Table::new();
    if let Some(name) = locked.metadata.get("name").and_then(|v| v.as_str()) {
        application.insert("name".into(), name.into());
    }
    if let Some(base) = locked
        .metadata
        .get("trigger")
        .and_then(|t| t.get("base"))
        .and_then(|b| b.as_str())
    {
        let mut http = Table::new();
        http.insert("base".into(), base.into());
        let mut trigger = Table::new();
        trigger.insert("http".into(), T::Table(http));
        application.insert("trigger".into(), T::Table(trigger));
    }
    doc.insert("application".into(), T::Table(application));
    let mut variables = Table::new();
    for (name, v) in locked.variables {
        let mut decl = Table::new();
        match v.default {
            Some(d) => decl.insert("default".into(), d.into()),
            None => decl.insert("required".into(), true.into()),
        };
        if v.secret {
            decl.insert("secret".into(), true.into());
        }
        if let Some(d) = v.description {
            decl.insert("description".into(), d.into());
        }
        variables.insert(name, T::Table(decl));
    }
    doc.insert("variables".into(), T::Table(variables));
    let mut http_triggers = Vec::new();
    for t in locked.triggers {
        ensure!(
            t.trigger_type == "http",
            "trigger {:?}: type {:?} is not supported: only http",
            t.id,
            t.trigger_type
        );
        let mut trigger = match json_to_toml(&t.trigger_config)? {
            T::Table(table) => table,
            _ => bail!("trigger {:?}: its config is not a table", t.id),
        };
        trigger.insert("id".into(), t.id.clone().into());
        http_triggers.push(T::Table(trigger));
    }
    let mut trigger = Table::new();
    trigger.insert("http".into(), T::Array(http_triggers));
    doc.insert("trigger".into(), T::Table(trigger));
    let mut components = Table::new();
    for c in locked.components {
        let id = c.id;
        ensure!(
            c.files.is_empty() && c.dependencies.is_empty(),
            "component {id:?}: 'files' and 'dependencies' are not supported by visits-runner"
        );
        for k in c.host_requirements.keys() {
            ensure!(
                k == "local_service_chaining",
                "component {id:?} requires {k:?}, which visits-runner does not support"
            );
        }
        let content = &c.source.content;
        let path = match (&content.digest, &content.inline) {
            (Some(d), _) if cache.get(d)?.is_some() => cache.path(d)?,
            (Some(d), Some(b64)) => {
                use base64::Engine as _;
                cache.put(d, &base64::engine::general_purpose::STANDARD.decode(b64)?)?
            }
            _ => bail!("component {id:?}: source {content:?} is not in the pulled artifact"),
        };
        let mut component = Table::new();
        component.insert("source".into(), path.to_string_lossy().into_owned().into());
        // The locked app's metadata keys -> spin.toml's ("databases" is Spin's lock name).
        for (lock_key, toml_key) in [
            ("allowed_outbound_hosts", "allowed_outbound_hosts"),
            ("key_value_stores", "key_value_stores"),
            ("databases", "sqlite_databases"),
            ("ai_models", "ai_models"),
        ] {
            if let Some(v) = c.metadata.get(lock_key) {
                component.insert(toml_key.into(), json_to_toml(v)?);
            }
        }
        if !c.env.is_empty() {
            component.insert("environment".into(), T::try_from(&c.env)?);
        }
        if !c.config.is_empty() {
            component.insert("variables".into(), T::try_from(&c.config)?);
        }
        components.insert(id, T::Table(component));
    }
    doc.insert("component".into(), T::Table(components));
    Ok(toml::to_string(&doc)?)
}

/// `up -f <reference>`: pull (or reuse the cache) and load the application.
pub async fn load_app(
    reference: &str,
    insecure: bool,
    cli_vars: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<App> {
    let cache = Cache::new(None)?;
    let pulled = pull(reference, insecure, &cache).await?;
    eprintln!("pulled {reference}@{}", pulled.digest);
    let text = to_manifest_toml(pulled.locked, &cache)?;
    let origin = format!("{reference} (locked app)");
    let app = manifest::parse(&text, &cache.root, &origin, cli_vars, env)
        .with_context(|| format!("invalid application in {reference}"))?;
    Ok(app)
}

/// Like Spin (src/commands/up/app_source.rs `infer_source`): an existing path is a manifest,
/// anything else that parses as a reference is one.
pub fn is_reference(from: &str) -> bool {
    !Path::new(from).exists() && from.parse::<Reference>().is_ok() && from.contains(['/', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projects_manifest_locks_as_spin_does() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spin.toml");
        let (locked, layers) = match lock(&manifest) {
            Ok(x) => x,
            // The components are built by scripts/build-wasm.sh before `cargo test`.
            Err(e) => panic!("{e:#} (run scripts/build-wasm.sh first)"),
        };
        assert_eq!(locked.spin_lock_version, 1);
        assert_eq!(locked.must_understand, ["component_host_requirements"]);
        let ids: Vec<_> = locked.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["page", "counter", "recorder"], "manifest order");
        assert_eq!(layers.len(), 3);
        let page = &locked.components[0];
        assert_eq!(page.host_requirements["local_service_chaining"], "required");
        assert!(locked.components[1].host_requirements.is_empty());
        assert_eq!(
            page.source.content.digest.as_deref(),
            Some(layers[0].sha256_digest().as_str())
        );
        let trig: Vec<_> = locked.triggers.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            trig,
            [
                "page-http-trigger",
                "counter-http-trigger",
                "recorder-http-trigger"
            ]
        );
        assert_eq!(locked.triggers[1].trigger_config["route"]["private"], true);
        assert_eq!(locked.metadata["trigger"]["type"], "http");
        assert!(locked.variables["mongo_password"].secret);
        let json = String::from_utf8(serde_json::to_vec(&locked).unwrap()).unwrap();
        assert!(json.starts_with(r#"{"spin_lock_version":1,"must_understand":["component_host_requirements"],"metadata":{"authors":"#), "{json}");
        // What the runner reads back is the same app, its sources taken from the cache.
        let back: LockedApp = serde_json::from_str(&json).unwrap();
        let dir = std::env::temp_dir().join(format!("vr-lock-test-{}", std::process::id()));
        let cache = Cache::new(Some(dir.clone())).unwrap();
        for l in &layers {
            cache.put(&l.sha256_digest(), &l.data).unwrap();
        }
        let text = to_manifest_toml(back, &cache).unwrap();
        let app = manifest::parse(&text, &dir, "locked", &[], &|_| None).unwrap();
        assert_eq!(app.router.route("/").unwrap().component, "page");
        assert_eq!(
            app.components["counter"].source,
            cache.path(&layers[1].sha256_digest()).unwrap()
        );
        assert_eq!(app.components["page"].variables["project"], "wasm-visits");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_locked_app_with_unknown_requirements_is_refused() {
        let json = r#"{"spin_lock_version":1,"must_understand":["host_requirements"],
            "host_requirements":{"accelerated_spline_reticulation":"required"},
            "triggers":[],"components":[]}"#;
        let locked: LockedApp = serde_json::from_str(json).unwrap();
        let cache = Cache::new(Some(std::env::temp_dir().join("vr-req-test"))).unwrap();
        let err = to_manifest_toml(locked, &cache).unwrap_err();
        assert!(
            err.to_string().contains("accelerated_spline_reticulation"),
            "{err}"
        );
    }

    #[test]
    fn service_chaining_hosts() {
        assert!(is_service_chaining_host("http://counter.spin.internal"));
        assert!(is_service_chaining_host("http://*.spin.internal:80"));
        assert!(!is_service_chaining_host("redis://{{ redis_address }}"));
        assert!(!is_service_chaining_host("tcp://10.0.0.1:27017"));
    }

    #[test]
    fn references_and_paths() {
        assert!(is_reference("127.0.0.1:5000/wasm-visits:v1"));
        assert!(is_reference("ghcr.io/wasm-visits/wasm-visits@sha256:0000000000000000000000000000000000000000000000000000000000000000"));
        assert!(!is_reference("Cargo.toml"), "an existing file");
        assert!(!is_reference("no such dir"));
    }

    #[test]
    fn cache_refuses_wrong_content() {
        let dir = std::env::temp_dir().join(format!("vr-cache-test-{}", std::process::id()));
        let cache = Cache::new(Some(dir.clone())).unwrap();
        let d = sha256_digest(b"hello");
        assert!(cache.put(&d, b"hello").is_ok());
        assert!(cache.get(&d).unwrap().is_some());
        let err = cache.put(&d, b"other").unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");
        assert!(cache.get("md5:abc").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
