//! The identifiers of a Spin manifest, validated while the TOML is read (so a bad name is reported
//! at its line), with the rules and messages of Spin 3.6.3 (`crates/serde/src/id.rs`, used by
//! `crates/manifest/src/schema/v2.rs`):
//!
//! - an id is one or more words joined by a delimiter (`-` for kebab-case, `_` for snake_case);
//! - a word is non-empty, starts with an ASCII letter, holds only ASCII letters and digits, and
//!   its letters are all lowercase or all UPPERCASE;
//! - lower snake_case (variable names) also forbids UPPERCASE words.

use serde::Deserialize;
use std::fmt;

/// Checks `id` against Spin's word rules; the error text is Spin's own.
fn check_words(id: &str, delim: char, lowercase_only: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty".into());
    }
    let other = if delim == '-' { '_' } else { '-' };
    if id.contains(other) {
        return Err(format!(
            "words must be separated with {delim:?}, not {other:?}"
        ));
    }
    for word in id.split(delim) {
        let Some(first) = word.chars().next() else {
            return Err(format!("{delim:?}-separated words must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "{delim:?}-separated words must start with an ASCII letter; got {first:?}"
            ));
        }
        let upper = first.is_ascii_uppercase();
        for c in word.chars().skip(1) {
            if !c.is_ascii_alphanumeric() {
                return Err(format!(
                    "{delim:?}-separated words may only contain alphanumeric ASCII; got {c:?}"
                ));
            }
            if c.is_ascii_alphabetic() && c.is_ascii_uppercase() != upper {
                return Err(format!(
                    "{delim:?}-separated words must be all lowercase or all UPPERCASE; got {word:?}"
                ));
            }
        }
        if lowercase_only && upper {
            return Err(format!(
                "Lower-case identifiers must be all lowercase; got {id:?}"
            ));
        }
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $delim:expr, $lower:expr, $hint:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                check_words(&s, $delim, $lower)
                    .map(|()| Self(s))
                    .map_err(|e| format!("{e} ({})", $hint))
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Component ids (`[component.<id>]`, `component = "<id>"`): Spin's `KebabId`.
    KebabId,
    '-',
    false,
    "component ids are kebab-case: words of ASCII letters and digits, each starting with a \
     letter and all lowercase or all UPPERCASE, joined by single '-', e.g. \"my-component2\""
);

id_type!(
    /// Application and component variable names: Spin's `LowerSnakeId`.
    LowerSnakeId,
    '_',
    true,
    "variable names are lower snake_case: words of lowercase ASCII letters and digits, each \
     starting with a letter, joined by single '_', e.g. \"mongo_address2\""
);

/// A key-value store or SQLite database label: kebab-case or snake_case (Spin's
/// `kebab_or_snake_case` in `crates/manifest/src/schema/v2.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Label(String);

impl TryFrom<String> for Label {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if check_words(&s, '-', false).is_ok() || check_words(&s, '_', false).is_ok() {
            Ok(Self(s))
        } else {
            Err(format!(
                "expected kebab-case or snake_case, got {s:?} (labels are words of ASCII letters \
                 and digits, each starting with a letter, joined by single '-' or single '_')"
            ))
        }
    }
}

impl Label {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kebab(s: &str) -> Result<KebabId, String> {
        KebabId::try_from(s.to_string())
    }
    fn snake(s: &str) -> Result<LowerSnakeId, String> {
        LowerSnakeId::try_from(s.to_string())
    }

    #[test]
    fn spins_own_examples() {
        // crates/manifest/src/schema/v2.rs test_valid_snake_ids / test_invalid_snake_ids (the
        // valid mixed-case ones are SnakeId, i.e. labels).
        for ok in ["default", "mixed_CASE_words", "letters1_then2_numbers345"] {
            assert!(Label::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "kebab-case",
            "_leading_underscore",
            "trailing_underscore_",
            "double__underscore",
            "1initial_number",
            "unicode_snowpeople☃☃☃",
            "mIxEd_case",
            "MiXeD_case",
        ] {
            assert!(snake(bad).is_err(), "{bad}");
        }
        assert!(Label::try_from("b@dlabel".to_string()).is_err());
        assert!(Label::try_from("kebab-case".to_string()).is_ok());
        assert!(Label::try_from("camelCase".to_string()).is_err());
    }

    #[test]
    fn messages_are_spins() {
        let e = snake("mongo_address_2").unwrap_err();
        assert!(
            e.starts_with("'_'-separated words must start with an ASCII letter; got '2'"),
            "{e}"
        );
        let e = kebab("bad_id").unwrap_err();
        assert!(
            e.starts_with("words must be separated with '-', not '_'"),
            "{e}"
        );
        let e = snake("bad+name").unwrap_err();
        assert!(
            e.starts_with("'_'-separated words may only contain alphanumeric ASCII; got '+'"),
            "{e}"
        );
        assert!(snake("MYVAR")
            .unwrap_err()
            .starts_with("Lower-case identifiers must be all lowercase"));
        assert!(kebab("MY-COMPONENT").is_ok());
        assert!(kebab("My-component").is_err());
        assert!(snake("mongo_address2").is_ok());
    }
}
