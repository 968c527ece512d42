//! Errors, and the classification the client's retry logic relies on.

use std::fmt;
use std::io;

use bson::{Bson, Document};

/// Server error codes that mean "this server is not (or no longer) the writable primary":
/// NotWritablePrimary (10107), NotPrimaryNoSecondaryOk (13435), NotPrimaryOrSecondary (13436),
/// PrimarySteppedDown (189), ShutdownInProgress (91), InterruptedAtShutdown (11600),
/// InterruptedDueToReplStateChange (11602).
pub const NOT_PRIMARY_CODES: [i32; 7] = [10107, 13435, 13436, 189, 91, 11600, 11602];

/// One entry of an `insert`'s `writeErrors`.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteError {
    pub index: i64,
    pub code: i32,
    pub message: String,
}

/// Everything that can go wrong talking to a server.
#[derive(Debug)]
pub enum Error {
    /// Connecting, reading or writing failed (including timeouts: `kind() == TimedOut`).
    Io(io::Error),
    /// The server sent something that is not a well-formed reply to our request.
    Protocol(String),
    /// A request could not be encoded (e.g. a document over the server's size limit).
    Encode(String),
    /// The server answered `ok: 0`.
    Command {
        code: i32,
        code_name: String,
        message: String,
    },
    /// The command ran but some writes failed (`writeErrors`).
    Write(Vec<WriteError>),
    /// The write was applied but its write concern was not satisfied (`writeConcernError`).
    WriteConcern { code: i32, message: String },
    /// Authentication failed, or the server's SCRAM messages did not verify.
    Auth(String),
    /// No seed led to a writable primary; the reason for each seed tried.
    NoPrimary(Vec<String>),
}

impl Error {
    /// True for errors that mean the server we talk to is not the writable primary (any
    /// more): the client rediscovers the primary and retries once.
    pub fn is_not_primary(&self) -> bool {
        let check = |code: i32, message: &str| {
            NOT_PRIMARY_CODES.contains(&code)
                || message.contains("not master")
                || message.contains("not primary")
        };
        match self {
            Error::Command { code, message, .. } => check(*code, message),
            Error::Write(errors) => errors.iter().any(|e| check(e.code, &e.message)),
            Error::WriteConcern { code, message } => check(*code, message),
            _ => false,
        }
    }

    /// True for connection-level failures (refused, reset, timed out, closed).
    pub fn is_network(&self) -> bool {
        matches!(self, Error::Io(_))
    }

    /// True for a timeout on connect, read or write.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock))
    }

    /// True when a `find` with a `hint` names an index that does not exist (MongoDB answers
    /// BadValue (2), "hint provided does not correspond to an existing index"; any BadValue
    /// mentioning the hint counts, in case the wording changes).
    pub fn is_missing_hint_index(&self) -> bool {
        matches!(self, Error::Command { code, message, .. }
            if message.contains("hint provided does not correspond to an existing index")
                || (*code == 2 && message.contains("hint")))
    }

    /// The server's error code, if it gave one.
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Command { code, .. } | Error::WriteConcern { code, .. } => Some(*code),
            Error::Write(errors) => errors.first().map(|e| e.code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "network error: {e}"),
            Error::Protocol(m) => write!(f, "bad reply: {m}"),
            Error::Encode(m) => write!(f, "cannot encode request: {m}"),
            Error::Command {
                code,
                code_name,
                message,
            } => {
                if code_name.is_empty() {
                    write!(f, "command failed ({code}): {message}")
                } else {
                    write!(f, "command failed ({code} {code_name}): {message}")
                }
            }
            Error::Write(errors) => {
                write!(f, "write failed")?;
                for e in errors.iter().take(3) {
                    write!(f, "; #{} ({}): {}", e.index, e.code, e.message)?;
                }
                Ok(())
            }
            Error::WriteConcern { code, message } => {
                write!(f, "write concern failed ({code}): {message}")
            }
            Error::Auth(m) => write!(f, "authentication failed: {m}"),
            Error::NoPrimary(reasons) => {
                write!(f, "no writable primary")?;
                if !reasons.is_empty() {
                    write!(f, " ({})", reasons.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Reads a number of any BSON numeric type as i64 (servers mix int32, int64 and double).
pub(crate) fn as_i64(v: Option<&Bson>) -> Option<i64> {
    match v? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(d) if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
        Bson::Boolean(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn as_code(v: Option<&Bson>) -> i32 {
    as_i64(v).and_then(|n| i32::try_from(n).ok()).unwrap_or(0)
}

fn as_string(v: Option<&Bson>) -> String {
    match v {
        Some(Bson::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Turns a command reply into `Ok(reply)` or a typed error: `ok` must be 1, and
/// `writeErrors` / `writeConcernError` are errors even when `ok` is 1.
pub fn check_reply(reply: Document) -> Result<Document, Error> {
    let ok = match reply.get("ok") {
        Some(Bson::Double(d)) => *d == 1.0,
        other => as_i64(other) == Some(1),
    };
    if !ok {
        let mut message = as_string(reply.get("errmsg"));
        if message.is_empty() {
            message = if reply.contains_key("ok") {
                "unknown error".into()
            } else {
                "reply has no \"ok\" field".into()
            };
        }
        return Err(Error::Command {
            code: as_code(reply.get("code")),
            code_name: as_string(reply.get("codeName")),
            message,
        });
    }
    if let Some(Bson::Array(entries)) = reply.get("writeErrors") {
        if !entries.is_empty() {
            let errors = entries
                .iter()
                .map(|e| match e {
                    Bson::Document(d) => WriteError {
                        index: as_i64(d.get("index")).unwrap_or(0),
                        code: as_code(d.get("code")),
                        message: as_string(d.get("errmsg")),
                    },
                    _ => WriteError {
                        index: 0,
                        code: 0,
                        message: "malformed write error".into(),
                    },
                })
                .collect();
            return Err(Error::Write(errors));
        }
    }
    if let Some(Bson::Document(wce)) = reply.get("writeConcernError") {
        return Err(Error::WriteConcern {
            code: as_code(wce.get("code")),
            message: as_string(wce.get("errmsg")),
        });
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn ok_values() {
        for ok in [Bson::Double(1.0), Bson::Int32(1), Bson::Int64(1)] {
            assert!(check_reply(doc! {"ok": ok}).is_ok());
        }
        for ok in [Bson::Double(0.0), Bson::Int32(0), Bson::String("1".into())] {
            assert!(check_reply(doc! {"ok": ok}).is_err());
        }
        assert!(
            matches!(check_reply(doc! {}), Err(Error::Command { message, .. }) if message.contains("no \"ok\""))
        );
    }

    #[test]
    fn command_error_fields() {
        let e = check_reply(
            doc! {"ok": 0.0, "errmsg": "boom", "code": 26, "codeName": "NamespaceNotFound"},
        )
        .unwrap_err();
        match &e {
            Error::Command {
                code,
                code_name,
                message,
            } => {
                assert_eq!(
                    (*code, code_name.as_str(), message.as_str()),
                    (26, "NamespaceNotFound", "boom")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), "command failed (26 NamespaceNotFound): boom");
        assert!(!e.is_not_primary());
        assert_eq!(e.code(), Some(26));
    }

    #[test]
    fn not_primary_classification() {
        for code in NOT_PRIMARY_CODES {
            let e = check_reply(doc! {"ok": 0, "code": code, "errmsg": "x"}).unwrap_err();
            assert!(e.is_not_primary(), "{code}");
        }
        for msg in [
            "not master",
            "not primary and secondaryOk=false",
            "Not primary while writing",
        ] {
            let e = check_reply(doc! {"ok": 0, "code": 1, "errmsg": msg}).unwrap_err();
            // "Not primary" (capitalised) is matched by code only, like the drivers' legacy check.
            assert_eq!(e.is_not_primary(), msg.starts_with("not"), "{msg}");
        }
        let e = check_reply(
            doc! {"ok": 1, "writeErrors": [{"index": 0, "code": 10107, "errmsg": "not primary"}]},
        )
        .unwrap_err();
        assert!(e.is_not_primary());
        let e = check_reply(doc! {"ok": 0, "code": 11000, "errmsg": "E11000 duplicate key"})
            .unwrap_err();
        assert!(!e.is_not_primary());
        assert!(!Error::Io(io::Error::other("x")).is_not_primary());
        assert!(Error::Io(io::Error::from(io::ErrorKind::TimedOut)).is_timeout());
    }

    #[test]
    fn write_errors() {
        let e = check_reply(
            doc! {"ok": 1, "n": 0, "writeErrors": [{"index": 0, "code": 11000, "errmsg": "dup"}]},
        )
        .unwrap_err();
        assert!(matches!(&e, Error::Write(w) if w[0].code == 11000 && w[0].message == "dup"));
        assert_eq!(e.to_string(), "write failed; #0 (11000): dup");
        assert!(check_reply(doc! {"ok": 1, "n": 1, "writeErrors": []}).is_ok());
        let e = check_reply(
            doc! {"ok": 1, "n": 1, "writeConcernError": {"code": 64, "errmsg": "waiting"}},
        )
        .unwrap_err();
        assert!(matches!(e, Error::WriteConcern { code: 64, .. }));
    }

    #[test]
    fn hint_error() {
        let e = check_reply(doc! {"ok": 0, "code": 2, "codeName": "BadValue",
            "errmsg": "error processing query: ns=x.y planner returned error :: caused by :: hint provided does not correspond to an existing index"})
        .unwrap_err();
        assert!(e.is_missing_hint_index());
    }
}
