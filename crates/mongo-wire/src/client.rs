//! The blocking client: one connection to the writable primary, found among the seeds.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bson::spec::BinarySubtype;
use bson::{doc, oid::ObjectId, Binary, Bson, Document};

use crate::error::{as_i64, check_reply, Error};
use crate::scram::{self, Mechanism, ScramCache, ScramClient};
use crate::topology::{HelloReply, Selector, MIN_WIRE_VERSION};
use crate::transport::{Connector, Stream};
use crate::wire::{self, DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN};

/// Replies are read (and their buffer grown) this much at a time.
const READ_CHUNK: usize = 1 << 20;

/// Credentials for SCRAM authentication. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    /// The database holding the user (`admin` when empty).
    pub source: String,
    pub mechanism: Mechanism,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// How to reach and talk to the deployment.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `IP:port` of one server (standalone) or of replica-set members; tried in order.
    pub seeds: Vec<SocketAddr>,
    pub credential: Option<Credential>,
    /// Bounds each connect and each command (its write and its whole reply together).
    pub timeout: Duration,
    /// Sent in the handshake (`client.application.name`), visible in the server's logs.
    pub app_name: Option<String>,
    /// The largest reply accepted before `hello` reports `maxMessageSizeBytes` (and an upper
    /// bound on what `hello` may raise it to).
    pub max_message_size: usize,
}

impl ClientOptions {
    pub fn new(seeds: Vec<SocketAddr>) -> Self {
        ClientOptions {
            seeds,
            credential: None,
            timeout: Duration::from_secs(1),
            app_name: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// One server connection speaking OP_MSG: request ids, deadlines, size caps.
///
/// After an I/O or protocol error the connection is *broken* (the stream may be mid-message)
/// and refuses further commands.
pub struct Connection<S> {
    stream: S,
    addr: SocketAddr,
    next_request_id: i32,
    max_message_size: usize,
    timeout: Duration,
    broken: bool,
    commands_sent: u64,
}

impl<S: Stream> Connection<S> {
    pub fn new(stream: S, addr: SocketAddr, timeout: Duration, max_message_size: usize) -> Self {
        Connection {
            stream,
            addr,
            next_request_id: 1,
            max_message_size,
            timeout,
            broken: false,
            commands_sent: 0,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Commands sent on this connection so far.
    pub fn commands_sent(&self) -> u64 {
        self.commands_sent
    }

    /// Lowers (never raises above the initial cap) the reply size limit, e.g. to the server's
    /// `maxMessageSizeBytes`.
    pub fn set_max_message_size(&mut self, size: usize) {
        self.max_message_size = self.max_message_size.min(size);
    }

    /// Sends `cmd` (which must carry `$db`) and returns the reply body, unchecked.
    pub fn round_trip(&mut self, cmd: &Document) -> Result<Document, Error> {
        if self.broken {
            return Err(Error::Io(io::Error::new(
                ErrorKind::NotConnected,
                "connection is broken by an earlier error",
            )));
        }
        let result = self.round_trip_inner(cmd);
        if matches!(result, Err(Error::Io(_) | Error::Protocol(_))) {
            self.broken = true;
        }
        result
    }

    /// Sends `cmd` and turns `ok: 0` / `writeErrors` into errors.
    pub fn command(&mut self, cmd: &Document) -> Result<Document, Error> {
        check_reply(self.round_trip(cmd)?)
    }

    fn round_trip_inner(&mut self, cmd: &Document) -> Result<Document, Error> {
        let id = self.next_request_id;
        self.next_request_id = if id == i32::MAX { 1 } else { id + 1 };
        let msg = wire::encode_op_msg(id, cmd)?;
        if msg.len() > self.max_message_size {
            return Err(Error::Encode(format!(
                "request of {} bytes exceeds the limit of {} bytes",
                msg.len(),
                self.max_message_size
            )));
        }
        let deadline = Instant::now() + self.timeout;
        self.commands_sent += 1;
        self.write_all(&msg, deadline)?;
        let mut header = [0u8; HEADER_LEN];
        self.read_exact(&mut header, deadline)?;
        let h = wire::parse_header(&header, id, self.max_message_size)?;
        // The length is checked against the cap before anything is allocated, and the buffer
        // grows (1 MiB at a time) only as bytes actually arrive.
        let total = h.message_length - HEADER_LEN;
        let mut payload = Vec::with_capacity(total.min(READ_CHUNK));
        while payload.len() < total {
            let start = payload.len();
            payload.resize(start + (total - start).min(READ_CHUNK), 0);
            self.read_exact(&mut payload[start..], deadline)?;
        }
        Ok(wire::decode_op_msg(&header, &payload)?.body)
    }

    fn remaining(deadline: Instant) -> io::Result<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(
                ErrorKind::TimedOut,
                "timed out waiting for the server",
            ))
        } else {
            Ok(left)
        }
    }

    fn write_all(&mut self, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            self.stream.set_timeout(Self::remaining(deadline)?)?;
            match self.stream.write(buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::WriteZero,
                        "server closed the connection",
                    ))
                }
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_kind(e)),
            }
        }
        self.stream.set_timeout(Self::remaining(deadline)?)?;
        self.stream.flush().map_err(timeout_kind)
    }

    fn read_exact(&mut self, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            self.stream.set_timeout(Self::remaining(deadline)?)?;
            match self.stream.read(buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "server closed the connection mid-reply",
                    ))
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_kind(e)),
            }
        }
        Ok(())
    }
}

/// std reports a socket timeout as `WouldBlock` on Unix: call it what it is.
fn timeout_kind(e: io::Error) -> io::Error {
    if e.kind() == ErrorKind::WouldBlock {
        io::Error::new(ErrorKind::TimedOut, "timed out waiting for the server")
    } else {
        e
    }
}

/// What [`Client::find`] sends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindOptions {
    pub filter: Document,
    pub sort: Option<Document>,
    /// At most this many documents (`None` or 0: no limit).
    pub limit: Option<i64>,
    pub projection: Option<Document>,
    /// An index name or key pattern the server must use.
    pub hint: Option<Bson>,
    /// Documents per batch (default: `limit`, or the server's default without a limit).
    pub batch_size: Option<i64>,
}

/// A client bound to the writable primary of a deployment.
pub struct Client<C: Connector> {
    connector: C,
    options: ClientOptions,
    conn: Option<Connection<C::Stream>>,
    hello: Option<HelloReply>,
    /// Commands sent on connections closed so far (see [`Client::commands_sent`]).
    commands_before: u64,
    /// The SCRAM password (derived once: MD5 digest for SHA-1, SASLprep for SHA-256).
    scram_password: Option<Vec<u8>>,
    scram_cache: Option<Box<dyn ScramCache + Send>>,
}

impl<C: Connector> Client<C> {
    /// Finds the writable primary among `options.seeds` (trying each in turn, following a
    /// primary named by a secondary) and authenticates if a credential is given.
    pub fn connect(connector: C, options: ClientOptions) -> Result<Self, Error> {
        Self::connect_inner(connector, options, None)
    }

    /// [`Client::connect`], keeping SCRAM salted passwords in `cache` so that only the first
    /// connection for a given user and salt pays for the derivation.
    pub fn connect_with_scram_cache(
        connector: C,
        options: ClientOptions,
        cache: Box<dyn ScramCache + Send>,
    ) -> Result<Self, Error> {
        Self::connect_inner(connector, options, Some(cache))
    }

    fn connect_inner(
        connector: C,
        options: ClientOptions,
        scram_cache: Option<Box<dyn ScramCache + Send>>,
    ) -> Result<Self, Error> {
        let scram_password = match &options.credential {
            Some(c) => Some(scram::mongo_password(
                c.mechanism,
                &c.username,
                &c.password,
            )?),
            None => None,
        };
        let mut client = Client {
            connector,
            options,
            conn: None,
            hello: None,
            commands_before: 0,
            scram_password,
            scram_cache,
        };
        client.discover(None)?;
        Ok(client)
    }

    /// The primary's `hello` reply from the handshake.
    pub fn server(&self) -> Option<&HelloReply> {
        self.hello.as_ref()
    }

    /// The address of the server the client talks to.
    pub fn address(&self) -> Option<SocketAddr> {
        self.conn.as_ref().map(Connection::address)
    }

    /// Commands sent so far, over all connections (handshake and auth included).
    pub fn commands_sent(&self) -> u64 {
        self.commands_before + self.conn.as_ref().map_or(0, Connection::commands_sent)
    }

    fn drop_connection(&mut self) {
        if let Some(c) = self.conn.take() {
            self.commands_before += c.commands_sent();
        }
    }

    fn discover(&mut self, prefer: Option<SocketAddr>) -> Result<(), Error> {
        self.drop_connection();
        self.hello = None;
        let mut selector = Selector::new(&self.options.seeds, prefer);
        while let Some(addr) = selector.next_candidate() {
            match self.open(addr) {
                Ok((mut conn, hello, speculative)) if hello.is_writable_primary => {
                    if let Err(e) = self.authenticate(&mut conn, speculative) {
                        self.commands_before += conn.commands_sent();
                        // Wrong credentials are wrong everywhere: stop here.
                        return Err(e);
                    }
                    self.conn = Some(conn);
                    self.hello = Some(hello);
                    return Ok(());
                }
                Ok((conn, hello, _)) => {
                    self.commands_before += conn.commands_sent();
                    selector.not_primary(addr, &hello);
                }
                Err(e) => selector.failed(addr, e),
            }
        }
        Err(Error::NoPrimary(selector.reasons))
    }

    fn auth_source(cred: &Credential) -> &str {
        if cred.source.is_empty() {
            "admin"
        } else {
            cred.source.as_str()
        }
    }

    /// A new SCRAM conversation and its client-first message, if there is a credential.
    fn start_scram(&self) -> Result<Option<(ScramClient, String)>, Error> {
        let (Some(cred), Some(password)) = (&self.options.credential, &self.scram_password) else {
            return Ok(None);
        };
        Ok(Some(ScramClient::start(
            cred.mechanism,
            &cred.username,
            password.clone(),
            scram::new_nonce()?,
        )))
    }

    /// Connects to `addr` and runs the handshake `hello`. With a credential, the hello carries
    /// the SCRAM client-first message (`speculativeAuthenticate`, MongoDB >= 4.4), saving the
    /// `saslStart` round trip; returns the conversation and the server's answer if it took it.
    #[allow(clippy::type_complexity)]
    fn open(
        &mut self,
        addr: SocketAddr,
    ) -> Result<
        (
            Connection<C::Stream>,
            HelloReply,
            Option<(ScramClient, Document)>,
        ),
        Error,
    > {
        let stream = self.connector.connect(addr, self.options.timeout)?;
        let mut conn = Connection::new(
            stream,
            addr,
            self.options.timeout,
            self.options.max_message_size,
        );
        let mut client = doc! {
            "driver": { "name": "mongo-wire", "version": env!("CARGO_PKG_VERSION") },
            "os": { "type": std::env::consts::OS },
        };
        if let Some(app) = &self.options.app_name {
            let app: String = app.chars().take(128).collect();
            client.insert("application", doc! { "name": app });
        }
        let mut hello_cmd = doc! { "hello": 1, "client": client };
        let scram = self.start_scram()?;
        if let (Some((_, first)), Some(cred)) = (&scram, &self.options.credential) {
            hello_cmd.insert(
                "speculativeAuthenticate",
                doc! {
                    "saslStart": 1,
                    "mechanism": cred.mechanism.name(),
                    "payload": binary(first.clone().into_bytes()),
                    "options": { "skipEmptyExchange": true },
                    "db": Self::auth_source(cred),
                },
            );
        }
        hello_cmd.insert("$db", "admin");
        let reply = match conn.command(&hello_cmd) {
            // Servers before 4.4.2 do not know `hello`: fall back to the legacy name.
            Err(Error::Command { code: 59, .. }) => {
                let mut legacy = doc! { "isMaster": 1 };
                for (k, v) in hello_cmd.iter().skip(1) {
                    legacy.insert(k.clone(), v.clone());
                }
                conn.command(&legacy)?
            }
            other => other?,
        };
        let hello = HelloReply::from_document(&reply);
        if hello.max_wire_version < MIN_WIRE_VERSION {
            return Err(Error::Protocol(format!(
                "server wire version {} is too old for OP_MSG (needs MongoDB >= 3.6, wire version {MIN_WIRE_VERSION})",
                hello.max_wire_version
            )));
        }
        conn.set_max_message_size(hello.max_message_size_bytes);
        let speculative = match (scram, reply.get("speculativeAuthenticate")) {
            (Some((scram, _)), Some(Bson::Document(d))) => Some((scram, d.clone())),
            _ => None,
        };
        Ok((conn, hello, speculative))
    }

    fn authenticate(
        &self,
        conn: &mut Connection<C::Stream>,
        speculative: Option<(ScramClient, Document)>,
    ) -> Result<(), Error> {
        let mut from_cache = None;
        match self.authenticate_once(conn, speculative, &mut from_cache) {
            // A cached salted password the server refuses (a stale or damaged entry): forget
            // it and authenticate once more, deriving it afresh.
            Err(Error::Auth(_)) if from_cache.is_some() => {
                if let (Some(cache), Some(key)) = (&self.scram_cache, from_cache.take()) {
                    cache.remove(&key);
                }
                self.authenticate_once(conn, None, &mut None)
            }
            other => other,
        }
    }

    /// One SASL conversation. `from_cache` is set to the cache key when the salted password
    /// came from the cache; a freshly derived one is cached only once the server accepted it.
    fn authenticate_once(
        &self,
        conn: &mut Connection<C::Stream>,
        speculative: Option<(ScramClient, Document)>,
        from_cache: &mut Option<String>,
    ) -> Result<(), Error> {
        let Some(cred) = &self.options.credential else {
            return Ok(());
        };
        let source = Self::auth_source(cred);
        let auth_err = |e: Error| match e {
            Error::Command { message, code, .. } => Error::Auth(format!("{message} ({code})")),
            other => other,
        };
        let (scram, first_reply) = match speculative {
            Some(started) => started,
            None => {
                let (scram, first) = self.start_scram()?.expect("a credential");
                let reply = conn
                    .command(&doc! {
                        "saslStart": 1,
                        "mechanism": cred.mechanism.name(),
                        "payload": binary(first.into_bytes()),
                        "autoAuthorize": 1,
                        "options": { "skipEmptyExchange": true },
                        "$db": source,
                    })
                    .map_err(auth_err)?;
                (scram, reply)
            }
        };
        let (conversation, _, server_first) = sasl_reply(&first_reply)?;
        let cache = self.scram_cache.as_deref();
        let mut derived = None;
        let (scram, client_final) =
            scram.handle_server_first_with(&server_first, |m, password, salt, iterations| {
                let Some(cache) = cache else {
                    return m.salted_password(password, salt, iterations);
                };
                let key = scram::cache_key(m, source, &cred.username, salt, iterations);
                if let Some(hit) = cache.get(&key).filter(|v| v.len() == m.output_len()) {
                    *from_cache = Some(key);
                    return hit;
                }
                let fresh = m.salted_password(password, salt, iterations);
                derived = Some((key, fresh.clone()));
                fresh
            })?;
        let reply = conn
            .command(&doc! {
                "saslContinue": 1,
                "conversationId": conversation.clone(),
                "payload": binary(client_final.into_bytes()),
                "$db": source,
            })
            .map_err(auth_err)?;
        let (_, mut done, server_final) = sasl_reply(&reply)?;
        scram.verify_server_final(&server_final)?;
        // Servers that ignore skipEmptyExchange want one more, empty, round.
        let mut rounds = 0;
        while !done {
            rounds += 1;
            if rounds > 2 {
                return Err(Error::Auth(
                    "server did not finish the SASL conversation".into(),
                ));
            }
            let reply = conn
                .command(&doc! {
                    "saslContinue": 1,
                    "conversationId": conversation.clone(),
                    "payload": binary(Vec::new()),
                    "$db": source,
                })
                .map_err(auth_err)?;
            done = sasl_reply(&reply)?.1;
        }
        if let (Some(cache), Some((key, salted))) = (cache, derived) {
            cache.put(&key, &salted);
        }
        Ok(())
    }

    /// Runs `f` on the primary's connection; on a not-primary error rediscovers the primary
    /// and retries once. Connection-level errors drop the connection (the next call
    /// reconnects) and are returned.
    fn with_primary<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection<C::Stream>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut retried = false;
        loop {
            if self.conn.as_ref().is_none_or(Connection::is_broken) {
                self.discover(None)?;
            }
            let conn = self.conn.as_mut().expect("discover leaves a connection");
            let result = f(conn);
            match &result {
                Err(e) if e.is_not_primary() && !retried => {
                    retried = true;
                    self.discover(None)?;
                }
                Err(e) if conn_broken(e) => {
                    self.drop_connection();
                    return result;
                }
                _ => return result,
            }
        }
    }

    /// Runs `hello` again on the current connection.
    pub fn hello(&mut self) -> Result<HelloReply, Error> {
        let reply = self.with_primary(|c| c.command(&doc! { "hello": 1, "$db": "admin" }))?;
        let hello = HelloReply::from_document(&reply);
        self.hello = Some(hello.clone());
        Ok(hello)
    }

    /// Runs any command against database `db` (sets `$db`); `ok: 0` and `writeErrors` become
    /// errors. Retried once on another primary if the server is not (or no longer) primary.
    pub fn run_command(&mut self, db: &str, mut cmd: Document) -> Result<Document, Error> {
        cmd.insert("$db", db);
        self.with_primary(|c| c.command(&cmd))
    }

    /// Inserts one document (adding an ObjectId `_id` if it has none, as the drivers do).
    pub fn insert_one(
        &mut self,
        db: &str,
        coll: &str,
        mut document: Document,
    ) -> Result<(), Error> {
        if !document.contains_key("_id") {
            let mut with_id = doc! { "_id": ObjectId::new() };
            with_id.extend(document);
            document = with_id;
        }
        let cmd = doc! { "insert": coll, "documents": [document], "ordered": true, "$db": db };
        let reply = self.with_primary(|c| c.command(&cmd))?;
        match as_i64(reply.get("n")) {
            Some(1) | None => Ok(()),
            Some(n) => Err(Error::Protocol(format!(
                "insert of one document reports n = {n}"
            ))),
        }
    }

    /// Runs `find` and returns the documents: the first batch, then `getMore` until the cursor
    /// is exhausted or `limit` documents arrived; a cursor left open is killed.
    pub fn find(
        &mut self,
        db: &str,
        coll: &str,
        options: &FindOptions,
    ) -> Result<Vec<Document>, Error> {
        let mut cmd = doc! { "find": coll, "filter": options.filter.clone() };
        if let Some(sort) = &options.sort {
            cmd.insert("sort", sort.clone());
        }
        if let Some(p) = &options.projection {
            cmd.insert("projection", p.clone());
        }
        let limit = options.limit.filter(|l| *l > 0);
        if let Some(limit) = limit {
            cmd.insert("limit", limit);
        }
        let batch_size = options.batch_size.filter(|b| *b > 0).or(limit);
        if let Some(b) = batch_size {
            cmd.insert("batchSize", b);
        }
        if let Some(hint) = &options.hint {
            cmd.insert("hint", hint.clone());
        }
        cmd.insert("$db", db);
        let (mut docs, mut cursor_id) = self.with_primary(|c| {
            let reply = c.command(&cmd)?;
            parse_cursor(&reply, "firstBatch")
        })?;
        let mut get_mores = 0;
        while cursor_id != 0 && limit.is_none_or(|l| (docs.len() as i64) < l) {
            get_mores += 1;
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| Error::Protocol("lost the connection".into()))?;
            let mut more = doc! { "getMore": cursor_id, "collection": coll };
            let left = limit.map(|l| l - docs.len() as i64);
            if let Some(b) = match (batch_size, left) {
                (Some(b), Some(l)) => Some(b.min(l)),
                (b, l) => b.or(l),
            } {
                more.insert("batchSize", b);
            }
            more.insert("$db", db);
            let (batch, id) = conn
                .command(&more)
                .and_then(|r| parse_cursor(&r, "nextBatch"))?;
            cursor_id = id;
            if batch.is_empty() && get_mores > 10 {
                break; // a cursor that keeps giving nothing (tailable?): stop asking
            }
            docs.extend(batch);
        }
        if let Some(l) = limit {
            docs.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        if cursor_id != 0 {
            // Best effort: the server would time the cursor out anyway.
            if let Some(conn) = self.conn.as_mut() {
                let _ =
                    conn.command(&doc! { "killCursors": coll, "cursors": [cursor_id], "$db": db });
            }
        }
        Ok(docs)
    }

    /// `find` using the index `keys`, creating that index only when the server reports it
    /// missing: the query carries `hint: keys`; if MongoDB refuses the hint (no such index),
    /// `createIndexes` runs and the query is repeated without the hint. In the steady state
    /// this costs no round trip beyond the `find` itself. (Servers that ignore hints, like
    /// nx-27017, simply never create the index.)
    pub fn find_with_index(
        &mut self,
        db: &str,
        coll: &str,
        options: &FindOptions,
        keys: &Document,
        index_name: &str,
    ) -> Result<Vec<Document>, Error> {
        let hinted = FindOptions {
            hint: Some(Bson::Document(keys.clone())),
            ..options.clone()
        };
        match self.find(db, coll, &hinted) {
            Err(e) if e.is_missing_hint_index() => {
                self.create_index(db, coll, keys.clone(), index_name)?;
                self.find(db, coll, options)
            }
            other => other,
        }
    }

    /// Creates an index (idempotent: an identical existing index is fine).
    pub fn create_index(
        &mut self,
        db: &str,
        coll: &str,
        keys: Document,
        name: &str,
    ) -> Result<(), Error> {
        let cmd = doc! {
            "createIndexes": coll,
            "indexes": [{ "key": keys, "name": name }],
            "$db": db,
        };
        self.with_primary(|c| c.command(&cmd)).map(|_| ())
    }
}

fn conn_broken(e: &Error) -> bool {
    matches!(e, Error::Io(_) | Error::Protocol(_))
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

/// (conversationId, done, payload) of a saslStart/saslContinue reply.
fn sasl_reply(reply: &Document) -> Result<(Bson, bool, Vec<u8>), Error> {
    let conversation = reply
        .get("conversationId")
        .cloned()
        .ok_or_else(|| Error::Auth("SASL reply has no conversationId".into()))?;
    let done = matches!(reply.get("done"), Some(Bson::Boolean(true)));
    let payload = match reply.get("payload") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        Some(Bson::String(s)) => s.clone().into_bytes(),
        _ => return Err(Error::Auth("SASL reply has no payload".into())),
    };
    Ok((conversation, done, payload))
}

/// Reads `cursor.{id, <batch>}` from a find/getMore reply.
pub fn parse_cursor(reply: &Document, batch: &str) -> Result<(Vec<Document>, i64), Error> {
    let bad = |what: &str| Error::Protocol(format!("cursor reply: {what}"));
    let Some(Bson::Document(cursor)) = reply.get("cursor") else {
        return Err(bad("no cursor document"));
    };
    let id = as_i64(cursor.get("id")).ok_or_else(|| bad("no cursor id"))?;
    let Some(Bson::Array(items)) = cursor.get(batch) else {
        return Err(bad(&format!("no {batch} array")));
    };
    let docs = items
        .iter()
        .map(|v| match v {
            Bson::Document(d) => Ok(d.clone()),
            _ => Err(bad(&format!("{batch} holds a non-document"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((docs, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_parsing() {
        let r =
            doc! {"cursor": {"id": 0i64, "ns": "a.b", "firstBatch": [{"x": 1}, {"x": 2}]}, "ok": 1};
        let (docs, id) = parse_cursor(&r, "firstBatch").unwrap();
        assert_eq!((docs.len(), id), (2, 0));
        let r = doc! {"cursor": {"id": 7, "nextBatch": []}, "ok": 1};
        assert_eq!(parse_cursor(&r, "nextBatch").unwrap().1, 7);
        for bad in [
            doc! {"ok": 1},
            doc! {"cursor": 1},
            doc! {"cursor": {"firstBatch": []}},
            doc! {"cursor": {"id": 0, "firstBatch": {}}},
            doc! {"cursor": {"id": 0, "firstBatch": [1]}},
            doc! {"cursor": {"id": "x", "firstBatch": []}},
        ] {
            assert!(
                matches!(parse_cursor(&bad, "firstBatch"), Err(Error::Protocol(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sasl_replies() {
        let r = doc! {"conversationId": 1, "done": false, "payload": binary(b"r=x".to_vec())};
        assert_eq!(
            sasl_reply(&r).unwrap(),
            (Bson::Int32(1), false, b"r=x".to_vec())
        );
        assert!(sasl_reply(&doc! {"done": true}).is_err());
        assert!(sasl_reply(&doc! {"conversationId": 1}).is_err());
    }

    #[test]
    fn credential_debug_hides_password() {
        let c = Credential {
            username: "u".into(),
            password: "secret".into(),
            source: "admin".into(),
            mechanism: Mechanism::ScramSha256,
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
