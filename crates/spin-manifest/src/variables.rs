//! Application variables and `{{ name }}` templates, with Spin 3.6.3's semantics.
//!
//! Values come from, in increasing precedence: the manifest `default`, the environment variable
//! `SPIN_VARIABLE_<UPPER_NAME>`, and `--variable name=value` (Spin: `crates/variables-env`,
//! `crates/runtime-factors/src/build.rs`). Component variables are templates over application
//! variables; a component may only read the variables it declares.

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use std::collections::HashMap;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(String),
}

/// A parsed `{{ var }}` template (Spin: `crates/expressions/src/template.rs`): text up to a `{{`
/// is literal, an expression runs to the next `}}` and is trimmed, an unmatched `{{` is an
/// error. A stray `}}` is literal text. Expressions are not checked here: they must name an
/// application variable, which [`Template::unknown_variables`] tells.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| e.to_string())
    }
}

impl Template {
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(expr) = rest.strip_prefix("{{") {
                let (name, after) = expr.split_once("}}").ok_or_else(|| {
                    anyhow!("invalid variable template {s:?}: unmatched '{{{{' in template")
                })?;
                parts.push(Part::Var(name.trim().to_string()));
                rest = after;
            } else {
                let end = rest.find("{{").unwrap_or(rest.len());
                parts.push(Part::Lit(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        Ok(Self {
            source: s.to_string(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
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

    /// The expressions that name no declared application variable.
    pub fn unknown_variables<'a>(
        &'a self,
        is_declared: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a str> {
        self.variables().filter(move |v| !is_declared(v))
    }

    pub fn resolve(&self, values: &HashMap<String, String>) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => {
                    out.push_str(values.get(v).ok_or_else(|| {
                        anyhow!("invalid variable template: unknown variable {v:?}")
                    })?)
                }
            }
        }
        Ok(out)
    }
}

/// The name a guest may ask `fermyon:spin/variables.get` for (Spin: `Key::validate` in
/// `crates/expressions/src/lib.rs`): lowercase letters, digits and single underscores, starting
/// with a letter and ending with a letter or digit. Names in the manifest are stricter
/// ([`crate::ids::LowerSnakeId`]).
pub fn validate_name(name: &str) -> Result<()> {
    let Some(first) = name.chars().next() else {
        bail!("invalid variable name {name:?}: must not be empty");
    };
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        bail!("invalid variable name {name:?}: invalid character {c:?}. Variable names may contain only lower-case letters, numbers, and underscores.");
    }
    if !first.is_ascii_lowercase() {
        bail!("invalid variable name {name:?}: must start with a lowercase ASCII letter");
    }
    if name.ends_with('_') {
        bail!("invalid variable name {name:?}: must end with a lowercase ASCII letter or digit");
    }
    if name.contains("__") {
        bail!("invalid variable name {name:?}: must not contain multiple consecutive underscores");
    }
    Ok(())
}

/// Declaration of an application variable (`[variables]`; Spin: `Variable` in
/// `crates/manifest/src/schema/common.rs`, checked by `locked_variable` in
/// `crates/loader/src/local.rs`): exactly one of `required = true` and `default`.
#[allow(dead_code)] // `secret` and `description` are accepted, not used
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "VariableFields")]
pub struct VariableDecl {
    pub default: Option<String>,
    pub secret: bool,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableFields {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    secret: bool,
}

impl TryFrom<VariableFields> for VariableDecl {
    type Error = &'static str;
    fn try_from(f: VariableFields) -> Result<Self, Self::Error> {
        if f.required == f.default.is_some() {
            return Err("a variable must be `required` OR have a `default` (exactly one of them)");
        }
        Ok(Self {
            default: f.default,
            secret: f.secret,
            description: f.description,
        })
    }
}

/// Resolve every application variable: CLI overrides, then the environment, then defaults.
/// A required variable without a value stops the start, as in Spin (`VariablesValidatorHook`,
/// `crates/trigger/src/cli/variable.rs`), even when no component reads it.
pub fn resolve_app_variables<'a>(
    decls: impl IntoIterator<Item = (&'a str, &'a VariableDecl)> + Clone,
    cli: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>> {
    // Stricter than Spin, which ignores values for undeclared variables: a typo here would
    // otherwise go unnoticed.
    for (k, _) in cli {
        if !decls.clone().into_iter().any(|(n, _)| n == k) {
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
        match from_cli.or_else(from_env).or_else(|| d.default.clone()) {
            Some(v) => {
                out.insert(name.to_string(), v);
            }
            None => bail!(
                "required variable {name:?} has no value: set SPIN_VARIABLE_{} or pass --variable {name}=VALUE",
                name.to_ascii_uppercase()
            ),
        }
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

    fn decl(default: Option<&str>) -> VariableDecl {
        VariableDecl {
            default: default.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn templates_parse_like_spin() {
        let t = Template::parse("redis://{{ host }}:{{port}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["host", "port"]);
        let vals = HashMap::from([("host".into(), "h".into()), ("port".into(), "1".into())]);
        assert_eq!(t.resolve(&vals).unwrap(), "redis://h:1");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(Template::parse("").unwrap().is_literal());
        // crates/expressions/src/template.rs template_parts_bad
        assert!(Template::parse("{{ matched }} {{ unmatched").is_err());
        // a stray '}}' is literal text in Spin
        assert!(Template::parse("x }} y").unwrap().is_literal());
        // expressions are not names: an unknown one is reported by unknown_variables
        let t = Template::parse("{{ Bad }}").unwrap();
        assert_eq!(
            t.unknown_variables(|v| vals.contains_key(v))
                .collect::<Vec<_>>(),
            ["Bad"]
        );
    }

    #[test]
    fn guest_variable_names_follow_spins_key_rule() {
        // crates/expressions/src/lib.rs keys_good / keys_bad
        for ok in ["a", "abc", "a1b2c3", "a_1", "a_1_b_3"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "aX", "1bc", "_x", "x.y", "x_", "a__b", "x-y"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn precedence_cli_env_default() {
        let decls = [
            ("a", decl(Some("default-a"))),
            ("b", decl(Some("default-b"))),
            ("c", decl(Some("default-c"))),
        ];
        let env = |k: &str| match k {
            "SPIN_VARIABLE_A" => Some("env-a".to_string()),
            "SPIN_VARIABLE_B" => Some("env-b".to_string()),
            _ => None,
        };
        let cli = vec![("a".to_string(), "cli-a".to_string())];
        let v = resolve_app_variables(decls.iter().map(|(n, d)| (*n, d)), &cli, &env).unwrap();
        assert_eq!(v["a"], "cli-a");
        assert_eq!(v["b"], "env-b");
        assert_eq!(v["c"], "default-c");
    }

    #[test]
    fn required_without_value_is_an_error() {
        let decls = [("token", decl(None))];
        let it = || decls.iter().map(|(n, d)| (*n, d));
        let err = resolve_app_variables(it(), &[], &|_| None).unwrap_err();
        assert!(err.to_string().contains("SPIN_VARIABLE_TOKEN"), "{err}");
        let ok = resolve_app_variables(it(), &[], &|_| Some("x".into())).unwrap();
        assert_eq!(ok["token"], "x");
        let unknown = [("zz".to_string(), "1".to_string())];
        assert!(resolve_app_variables(it(), &unknown, &|_| Some("x".into())).is_err());
    }

    #[test]
    fn declarations_need_required_xor_default() {
        let parse = |s: &str| toml::from_str::<VariableDecl>(s);
        assert!(parse("default = 'x'").is_ok());
        assert!(parse("required = true\nsecret = true").is_ok());
        assert!(parse("required = true\ndefault = 'x'").is_err());
        assert!(parse("secret = true").is_err());
        assert!(parse("default = 'x'\nvalue = 'y'").is_err());
        assert!(parse("default = 5").is_err());
    }
}
