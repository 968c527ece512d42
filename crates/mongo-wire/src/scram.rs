//! SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677) client, as a sans-IO state machine.
//!
//! ```text
//! let (client, first) = ScramClient::start(mechanism, username, password, nonce)?;   // -> saslStart payload
//! let (client, final_) = client.handle_server_first(&server_first)?;                   // -> saslContinue payload
//! client.verify_server_final(&server_final)?;                                          // server proved it knows the key
//! ```
//!
//! MongoDB specifics live in [`mongo_password`]: SCRAM-SHA-1 uses the hex MD5 digest of
//! `username:mongo:password` as the password (and no SASLprep); SCRAM-SHA-256 uses the password
//! itself after SASLprep.
//!
//! **SASLprep** (RFC 4013) is only implemented for its ASCII subset: a password made of
//! printable ASCII (U+0020..U+007E) is unchanged by SASLprep and is accepted; ASCII control
//! characters are prohibited by SASLprep and rejected; any non-ASCII password is rejected with
//! an explicit error rather than being sent un-normalised (which could silently fail to
//! authenticate). The username is not SASLprepped (as in MongoDB's drivers) but is escaped
//! (`=` -> `=3D`, `,` -> `=2C`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::error::Error;

/// The SCRAM hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha1,
    ScramSha256,
}

impl Mechanism {
    /// The SASL mechanism name MongoDB expects in `saslStart`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        macro_rules! run {
            ($h:ty) => {{
                let mut mac = <Hmac<$h> as Mac>::new_from_slice(key).expect("HMAC takes any key");
                for p in parts {
                    mac.update(p);
                }
                mac.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Mechanism::ScramSha1 => run!(Sha1),
            Mechanism::ScramSha256 => run!(Sha256),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha1 => Sha1::digest(data).to_vec(),
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// The length of this mechanism's hash (and so of a salted password).
    pub fn output_len(self) -> usize {
        match self {
            Mechanism::ScramSha1 => 20,
            Mechanism::ScramSha256 => 32,
        }
    }

    /// `Hi()` of RFC 5802: PBKDF2 with this HMAC, one output block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        macro_rules! run {
            ($h:ty) => {{
                let keyed =
                    <Hmac<$h> as Mac>::new_from_slice(password).expect("HMAC takes any key");
                let mut mac = keyed.clone();
                mac.update(salt);
                mac.update(&1u32.to_be_bytes());
                let mut u = mac.finalize().into_bytes();
                let mut out = u;
                for _ in 1..iterations {
                    let mut mac = keyed.clone();
                    mac.update(&u);
                    u = mac.finalize().into_bytes();
                    for (o, b) in out.iter_mut().zip(u.iter()) {
                        *o ^= b;
                    }
                }
                out.to_vec()
            }};
        }
        match self {
            Mechanism::ScramSha1 => run!(Sha1),
            Mechanism::ScramSha256 => run!(Sha256),
        }
    }
}

/// The least iteration count accepted from a server (MongoDB's auth spec demands 4096).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most accepted: bounds the CPU a hostile server can make us spend (MongoDB's default is
/// 10,000 for SHA-1 and 15,000 for SHA-256).
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// The password to feed SCRAM for MongoDB: SHA-1 uses `hex(md5("user:mongo:password"))`,
/// SHA-256 uses the SASLprepped password (ASCII only, see the module docs).
pub fn mongo_password(
    mechanism: Mechanism,
    username: &str,
    password: &str,
) -> Result<Vec<u8>, Error> {
    match mechanism {
        Mechanism::ScramSha1 => {
            let digest = Md5::digest(format!("{username}:mongo:{password}").as_bytes());
            Ok(digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes())
        }
        Mechanism::ScramSha256 => Ok(saslprep_ascii(password)?.as_bytes().to_vec()),
    }
}

/// SASLprep for the ASCII subset: printable ASCII passes unchanged (SASLprep maps it to
/// itself), ASCII control characters are prohibited output, non-ASCII is refused explicitly.
pub fn saslprep_ascii(s: &str) -> Result<&str, Error> {
    for c in s.chars() {
        if c.is_ascii_control() {
            return Err(Error::Auth(
                "the password contains an ASCII control character, which SASLprep prohibits".into(),
            ));
        }
        if !c.is_ascii() {
            return Err(Error::Auth(
                "non-ASCII passwords are not supported (this client does not implement full SASLprep); \
                 use an ASCII password or SCRAM-SHA-1"
                    .into(),
            ));
        }
    }
    Ok(s)
}

/// Escapes a SCRAM username: `=` -> `=3D`, `,` -> `=2C`.
pub fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A fresh client nonce: 24 random bytes, base64 (printable, never a comma).
pub fn new_nonce() -> Result<String, Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Auth(format!("no randomness for the nonce: {e}")))?;
    Ok(B64.encode(bytes))
}

/// Keeps SCRAM salted passwords between connections.
///
/// Deriving one costs an HMAC per iteration (15,000 for SCRAM-SHA-256 by MongoDB's default:
/// milliseconds of CPU, more inside WebAssembly), and a client that connects once per request,
/// as a Spin component must, would pay it on every request. MongoDB's drivers keep the value in
/// memory; a component can keep it in a key-value store. Entries are keyed by mechanism, user,
/// salt and iteration count ([`cache_key`]): a password change on the server comes with a new
/// salt, so a new entry. A salted password authenticates as its user, like the password
/// itself, so a cache belongs where the password is kept (see the crate README).
pub trait ScramCache {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn put(&self, key: &str, salted_password: &[u8]);
    fn remove(&self, key: &str);
}

/// The [`ScramCache`] key of a salted password.
pub fn cache_key(
    mechanism: Mechanism,
    source: &str,
    username: &str,
    salt: &[u8],
    iterations: u32,
) -> String {
    format!(
        "mongo-wire/scram/{}/{}/{}/{}/{iterations}",
        mechanism.name(),
        B64.encode(source),
        B64.encode(username),
        B64.encode(salt)
    )
}

/// After the client-first message: waiting for the server-first message.
pub struct ScramClient {
    mechanism: Mechanism,
    password: Vec<u8>,
    nonce: String,
    client_first_bare: String,
}

/// After the client-final message: waiting for the server's signature.
pub struct ScramAwaitingFinal {
    mechanism: Mechanism,
    expected_server_signature: Vec<u8>,
}

impl ScramClient {
    /// Starts a conversation; returns the state and the client-first message. `password` is
    /// the SCRAM password as bytes (for MongoDB, from [`mongo_password`]).
    pub fn start(
        mechanism: Mechanism,
        username: &str,
        password: Vec<u8>,
        nonce: String,
    ) -> (Self, String) {
        let client_first_bare = format!("n={},r={nonce}", escape_username(username));
        let first = format!("n,,{client_first_bare}");
        (
            ScramClient {
                mechanism,
                password,
                nonce,
                client_first_bare,
            },
            first,
        )
    }

    /// Checks the server-first message and computes the client-final message.
    pub fn handle_server_first(
        self,
        server_first: &[u8],
    ) -> Result<(ScramAwaitingFinal, String), Error> {
        self.handle_server_first_with(server_first, |m, password, salt, iterations| {
            m.salted_password(password, salt, iterations)
        })
    }

    /// [`ScramClient::handle_server_first`], with the salted password (`Hi()`, the costly
    /// part: one HMAC per iteration) obtained from `salted(mechanism, password, salt,
    /// iterations)`, e.g. from a cache (see [`ScramCache`]).
    pub fn handle_server_first_with(
        self,
        server_first: &[u8],
        salted: impl FnOnce(Mechanism, &[u8], &[u8], u32) -> Vec<u8>,
    ) -> Result<(ScramAwaitingFinal, String), Error> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| Error::Auth("server-first message is not UTF-8".into()))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for (i, attr) in server_first.split(',').enumerate() {
            let (key, value) = attr
                .split_once('=')
                .ok_or_else(|| Error::Auth("malformed server-first message".into()))?;
            match key {
                "m" if i == 0 => {
                    return Err(Error::Auth(
                        "server requires an unsupported SCRAM extension".into(),
                    ))
                }
                "e" => return Err(Error::Auth(format!("server says: {value}"))),
                "r" => nonce = Some(value),
                "s" => salt = Some(value),
                "i" => iterations = Some(value),
                _ => {} // optional extensions are ignored
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(Error::Auth("server-first message lacks r, s or i".into()));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(Error::Auth(
                "server nonce does not extend the client nonce".into(),
            ));
        }
        let salt = B64
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Auth("server salt is not valid base64".into()))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| Error::Auth("server iteration count is not a number".into()))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(Error::Auth(format!(
                "server iteration count {iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            )));
        }
        let m = self.mechanism;
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = salted(m, &self.password, &salt, iterations);
        if salted.len() != m.output_len() {
            return Err(Error::Auth(format!(
                "salted password of {} bytes for {} (want {})",
                salted.len(),
                m.name(),
                m.output_len()
            )));
        }
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let client_signature = m.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, &[b"Server Key"]);
        let expected_server_signature = m.hmac(&server_key, &[auth_message.as_bytes()]);
        Ok((
            ScramAwaitingFinal {
                mechanism: m,
                expected_server_signature,
            },
            format!("{without_proof},p={}", B64.encode(proof)),
        ))
    }
}

impl ScramAwaitingFinal {
    /// Verifies the server-final message (`v=<signature>`), in constant time.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), Error> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| Error::Auth("server-final message is not UTF-8".into()))?;
        let first = text.split(',').next().unwrap_or("");
        if let Some(e) = first.strip_prefix("e=") {
            return Err(Error::Auth(format!("server says: {e}")));
        }
        let sig = first
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| Error::Auth("malformed server-final message".into()))?;
        let _ = self.mechanism;
        let same = sig.len() == self.expected_server_signature.len()
            && sig
                .iter()
                .zip(&self.expected_server_signature)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(Error::Auth("the server's signature does not verify".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn run(
        m: Mechanism,
        user: &str,
        password: Vec<u8>,
        nonce: &str,
        server_first: &str,
        want_first: &str,
        want_final: &str,
        server_final: &str,
    ) {
        let (c, first) = ScramClient::start(m, user, password, nonce.into());
        assert_eq!(first, want_first);
        let (c, fin) = c.handle_server_first(server_first.as_bytes()).unwrap();
        assert_eq!(fin, want_final);
        c.verify_server_final(server_final.as_bytes()).unwrap();
        assert!(c.verify_server_final(b"v=AAAA").is_err());
        assert!(c
            .verify_server_final(b"e=invalid-proof")
            .unwrap_err()
            .to_string()
            .contains("invalid-proof"));
    }

    /// RFC 5802, section 5.
    #[test]
    fn rfc5802_sha1() {
        run(
            Mechanism::ScramSha1,
            "user",
            b"pencil".to_vec(),
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    /// RFC 7677, section 3.
    #[test]
    fn rfc7677_sha256() {
        run(
            Mechanism::ScramSha256,
            "user",
            mongo_password(Mechanism::ScramSha256, "user", "pencil").unwrap(),
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    /// MongoDB's auth spec example for SCRAM-SHA-1 (password = hex MD5 of "user:mongo:pencil").
    #[test]
    fn mongodb_sha1_example() {
        let pw = mongo_password(Mechanism::ScramSha1, "user", "pencil").unwrap();
        assert_eq!(pw, b"1c33006ec1ffd90f9cadcbcc0e118200");
        run(
            Mechanism::ScramSha1,
            "user",
            pw,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,s=rQ9ZY3MntBeuP3E1TDVC4w==,i=10000",
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,p=MC2T8BvbmWRckDw8oWl5IVghwCY=",
            "v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0=",
        );
    }

    #[test]
    fn server_first_checks() {
        let start =
            || ScramClient::start(Mechanism::ScramSha256, "u", b"p".to_vec(), "abc".into()).0;
        let bad = |sf: &str| {
            start()
                .handle_server_first(sf.as_bytes())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096").contains("nonce"));
        assert!(bad("r=abc,s=QSXCR+Q6sek8bf92,i=4096").contains("nonce"));
        assert!(bad("r=abcd,s=!!!,i=4096").contains("salt"));
        assert!(bad("r=abcd,s=QSXCR+Q6sek8bf92,i=10").contains("iteration"));
        assert!(bad("r=abcd,s=QSXCR+Q6sek8bf92,i=4000000000").contains("iteration"));
        assert!(bad("r=abcd,s=QSXCR+Q6sek8bf92,i=x").contains("iteration"));
        assert!(bad("r=abcd,s=QSXCR+Q6sek8bf92").contains("lacks"));
        assert!(bad("m=ext,r=abcd,s=QSXCR+Q6sek8bf92,i=4096").contains("extension"));
        assert!(bad("e=unknown-user").contains("unknown-user"));
        assert!(bad("garbage").contains("malformed"));
        assert!(start().handle_server_first(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn saslprep_and_escaping() {
        assert_eq!(saslprep_ascii("pencil ~!").unwrap(), "pencil ~!");
        assert!(saslprep_ascii("pen\u{7}cil")
            .unwrap_err()
            .to_string()
            .contains("control"));
        assert!(saslprep_ascii("pässword")
            .unwrap_err()
            .to_string()
            .contains("non-ASCII"));
        assert!(mongo_password(Mechanism::ScramSha256, "u", "I\u{ad}X").is_err());
        // SHA-1 does no SASLprep: any password is digested.
        assert!(mongo_password(Mechanism::ScramSha1, "u", "pässword").is_ok());
        assert_eq!(escape_username("a=b,c"), "a=3Db=2Cc");
        let (_, first) = ScramClient::start(Mechanism::ScramSha1, "a,b", vec![], "n".into());
        assert_eq!(first, "n,,n=a=2Cb,r=n");
    }

    #[test]
    fn nonces_differ() {
        let a = new_nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert!(!a.contains(','));
        assert_ne!(a, new_nonce().unwrap());
    }
}
