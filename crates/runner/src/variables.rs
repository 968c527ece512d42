//! Application variables and `{{ name }}` templates, with Spin's semantics.
//!
//! Values come from, in increasing precedence: the manifest `default`, the environment variable
//! `SPIN_VARIABLE_<UPPER_NAME>`, and `--variable name=value`. Component variables are templates
//! over application variables; a component may only read the variables it declares.

use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(String),
}

/// A parsed `{{ var }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| anyhow!("unterminated template expression in {s:?}"))?;
            let name = after[..end].trim();
            validate_name(name).map_err(|e| anyhow!("invalid template {s:?}: {e}"))?;
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            bail!("unmatched '}}}}' in template {s:?}");
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Self { parts })
    }

    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    pub fn resolve(&self, values: &HashMap<String, String>) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => out.push_str(
                    values
                        .get(v)
                        .ok_or_else(|| anyhow!("no value for variable {v:?}"))?,
                ),
            }
        }
        Ok(out)
    }
}

/// Spin's variable-name rule: lower-case ASCII letters, digits and single underscores, starting
/// with a letter.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    match chars.next() {
        Some('a'..='z') => {}
        _ => bail!("variable name {name:?} must start with a lowercase letter"),
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("variable name {name:?} may only contain lowercase letters, digits and '_'");
    }
    if name.contains("__") || name.ends_with('_') {
        bail!("variable name {name:?} must not contain '__' or end with '_'");
    }
    Ok(())
}

/// Declaration of an application variable (`[variables]`).
#[allow(dead_code)] // `secret` and `description` are accepted, not used
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// Resolve every application variable: CLI overrides, then the environment, then defaults.
pub fn resolve_app_variables(
    decls: &BTreeMap<String, VariableDecl>,
    cli: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>> {
    for (name, d) in decls {
        validate_name(name)?;
        if d.required && d.default.is_some() {
            bail!("variable {name:?} cannot be both required and have a default");
        }
        if !d.required && d.default.is_none() {
            bail!("variable {name:?} must either be required or have a default value");
        }
    }
    for (k, _) in cli {
        if !decls.contains_key(k) {
            bail!("--variable {k}: the application declares no variable named {k:?}");
        }
    }
    let mut out = HashMap::new();
    for (name, d) in decls {
        let from_cli = cli
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        let from_env = || env(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()));
        let value = from_cli.or_else(from_env).or_else(|| d.default.clone());
        match value {
            Some(v) => {
                out.insert(name.clone(), v);
            }
            None => bail!(
                "required variable {name:?} has no value: set SPIN_VARIABLE_{} or pass --variable {name}=VALUE",
                name.to_ascii_uppercase()
            ),
        }
    }
    Ok(out)
}

/// Resolve one component's `[component.x.variables]` against the application variables.
pub fn resolve_component_variables(
    component: &str,
    templates: &BTreeMap<String, String>,
    app: &HashMap<String, String>,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (name, tmpl) in templates {
        validate_name(name).map_err(|e| anyhow!("component {component:?}: {e}"))?;
        let t = Template::parse(tmpl).map_err(|e| anyhow!("component {component:?}: {e}"))?;
        for v in t.variables() {
            if !app.contains_key(v) {
                bail!("component {component:?} variable {name:?} refers to undeclared application variable {v:?}");
            }
        }
        out.insert(name.clone(), t.resolve(app)?);
    }
    Ok(out)
}

/// Parse a `k=v` CLI pair.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    Ok((k.trim().to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(default: Option<&str>, required: bool) -> VariableDecl {
        VariableDecl {
            default: default.map(str::to_string),
            required,
            ..Default::default()
        }
    }

    #[test]
    fn templates_parse_and_resolve() {
        let t = Template::parse("redis://{{ host }}:{{port}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["host", "port"]);
        let vals = HashMap::from([("host".into(), "h".into()), ("port".into(), "1".into())]);
        assert_eq!(t.resolve(&vals).unwrap(), "redis://h:1");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(Template::parse("{{ unterminated").is_err());
        assert!(Template::parse("{{ Bad }}").is_err());
        assert!(Template::parse("x }} y").is_err());
    }

    #[test]
    fn precedence_cli_env_default() {
        let decls = BTreeMap::from([
            ("a".to_string(), decl(Some("default-a"), false)),
            ("b".to_string(), decl(Some("default-b"), false)),
            ("c".to_string(), decl(Some("default-c"), false)),
        ]);
        let env = |k: &str| match k {
            "SPIN_VARIABLE_A" => Some("env-a".to_string()),
            "SPIN_VARIABLE_B" => Some("env-b".to_string()),
            _ => None,
        };
        let cli = vec![("a".to_string(), "cli-a".to_string())];
        let v = resolve_app_variables(&decls, &cli, &env).unwrap();
        assert_eq!(v["a"], "cli-a");
        assert_eq!(v["b"], "env-b");
        assert_eq!(v["c"], "default-c");
    }

    #[test]
    fn required_without_value_is_an_error() {
        let decls = BTreeMap::from([("token".to_string(), decl(None, true))]);
        let err = resolve_app_variables(&decls, &[], &|_| None).unwrap_err();
        assert!(err.to_string().contains("SPIN_VARIABLE_TOKEN"), "{err}");
        let ok = resolve_app_variables(&decls, &[], &|_| Some("x".into())).unwrap();
        assert_eq!(ok["token"], "x");
    }

    #[test]
    fn unknown_cli_variable_and_bad_names() {
        let decls = BTreeMap::from([("a".to_string(), decl(Some("1"), false))]);
        assert!(resolve_app_variables(&decls, &[("zz".into(), "1".into())], &|_| None).is_err());
        let bad = BTreeMap::from([("A".to_string(), decl(Some("1"), false))]);
        assert!(resolve_app_variables(&bad, &[], &|_| None).is_err());
        let neither = BTreeMap::from([("a".to_string(), decl(None, false))]);
        assert!(resolve_app_variables(&neither, &[], &|_| None).is_err());
    }

    #[test]
    fn component_variables_reference_declared_ones() {
        let app = HashMap::from([("host".to_string(), "h".to_string())]);
        let t = BTreeMap::from([("addr".to_string(), "{{ host }}:6379".to_string())]);
        let v = resolve_component_variables("c", &t, &app).unwrap();
        assert_eq!(v["addr"], "h:6379");
        let bad = BTreeMap::from([("addr".to_string(), "{{ nope }}".to_string())]);
        assert!(resolve_component_variables("c", &bad, &app).is_err());
    }
}
