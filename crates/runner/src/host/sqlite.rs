//! `fermyon:spin/sqlite@2.0.0`: the `default` database, a SQLite file in the state directory.

use super::fermyon::spin::sqlite;
use super::State;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::component::Resource;

/// Idle connections to the `default` database, reused across requests (opening one per
/// request costs a file open and a schema parse, and closing the last connection of a WAL
/// database checkpoints it with an fsync).
pub(super) struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Pool {
    /// With `open_now`, opens (creating) the file at startup rather than on the first request.
    pub(super) fn new(path: PathBuf, open_now: bool) -> anyhow::Result<Self> {
        let mut idle = Vec::new();
        if open_now {
            idle.push(open(&path, "").map_err(|e| {
                anyhow::anyhow!("cannot open SQLite database {}: {e}", path.display())
            })?);
        }
        Ok(Self {
            path,
            idle: Mutex::new(idle),
        })
    }
}

pub struct SqliteConn {
    conn: rusqlite::Connection,
}

/// Opens (creating) a database in WAL mode with `synchronous = NORMAL`, `schema` applied.
pub(super) fn open(path: &Path, schema: &str) -> Result<rusqlite::Connection, String> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let created = !path.exists();
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        if created {
            // A new file holds nothing yet: switching it to WAL and writing its schema would
            // fsync it, its journal and the directory 6 times (2-3 ms of every start with a
            // fresh state directory, as in a new pod). A power loss that tears it loses no
            // more than NORMAL's last commits would.
            conn.pragma_update(None, "synchronous", "OFF")?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        if !schema.is_empty() {
            conn.execute_batch(schema)?;
        }
        // WAL + NORMAL: a committed transaction survives a crash of this process (kill -9;
        // tests/reliability checks it), since the WAL is in the OS page cache; only a power
        // loss or kernel crash may lose the last commits. FULL would fsync every increment.
        conn.pragma_update(None, "synchronous", "NORMAL")
    };
    setup().map_err(|e| e.to_string())?;
    Ok(conn)
}

fn to_sql(v: sqlite::Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        sqlite::Value::Integer(i) => S::Integer(i),
        sqlite::Value::Real(f) => S::Real(f),
        sqlite::Value::Text(t) => S::Text(t),
        sqlite::Value::Blob(b) => S::Blob(b),
        sqlite::Value::Null => S::Null,
    }
}

fn from_sql(v: rusqlite::types::ValueRef<'_>) -> sqlite::Value {
    use rusqlite::types::ValueRef as S;
    match v {
        S::Null => sqlite::Value::Null,
        S::Integer(i) => sqlite::Value::Integer(i),
        S::Real(f) => sqlite::Value::Real(f),
        S::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        S::Blob(b) => sqlite::Value::Blob(b.to_vec()),
    }
}

fn run_sql(
    conn: &rusqlite::Connection,
    statement: &str,
    params: Vec<sqlite::Value>,
) -> rusqlite::Result<sqlite::QueryResult> {
    let mut stmt = conn.prepare_cached(statement)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let params: Vec<rusqlite::types::Value> = params.into_iter().map(to_sql).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(from_sql(row.get_ref(i)?));
        }
        out.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult { columns, rows: out })
}

impl sqlite::Host for State {}

impl sqlite::HostConnection for State {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConn>, sqlite::Error>> {
        if !self.comp.sqlite_databases.iter().any(|d| d == &database) {
            return Ok(Err(if database == "default" {
                sqlite::Error::AccessDenied
            } else {
                sqlite::Error::NoSuchDatabase
            }));
        }
        let pooled = self
            .shared
            .sqlite
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => match open(&self.shared.sqlite.path, "") {
                Ok(c) => c,
                Err(e) => return Ok(Err(sqlite::Error::Io(e))),
            },
        };
        Ok(Ok(self.table.push(SqliteConn { conn })?))
    }

    async fn execute(
        &mut self,
        c: Resource<SqliteConn>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let conn = &self.table.get(&c)?.conn;
        Ok(run_sql(conn, &statement, parameters).map_err(|e| sqlite::Error::Io(e.to_string())))
    }

    async fn drop(&mut self, c: Resource<SqliteConn>) -> wasmtime::Result<()> {
        let SqliteConn { conn } = self.table.delete(c)?;
        // Only a connection outside any transaction the guest left open goes back to the pool.
        if conn.is_autocommit() {
            let mut pool = self
                .shared
                .sqlite
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if pool.len() < 32 {
                pool.push(conn);
            }
        }
        Ok(())
    }
}
