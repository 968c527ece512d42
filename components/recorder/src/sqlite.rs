//! The embedded backend: Spin's default SQLite database (`sqlite_databases = ["default"]`).

use spin_sdk::sqlite::{Connection, Value};
use visits_core::client_ip::parse_addr;
use visits_core::record::{validate_page, Listing, RecordError};
use visits_core::{Record, UtcTime};

use crate::Store;

pub(crate) struct SqliteStore {
    conn: Connection,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS visits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_ip TEXT NOT NULL,
    date_ms INTEGER NOT NULL,
    page TEXT NOT NULL
)";
const INDEX: &str = "CREATE INDEX IF NOT EXISTS visits_newest ON visits (date_ms DESC, id DESC)";

impl SqliteStore {
    pub(crate) fn open() -> Result<Self, String> {
        let conn = Connection::open_default().map_err(|e| format!("sqlite: open failed: {e}"))?;
        for statement in [SCHEMA, INDEX] {
            conn.execute(statement, &[])
                .map_err(|e| format!("sqlite: schema: {e}"))?;
        }
        Ok(SqliteStore { conn })
    }
}

impl Store for SqliteStore {
    fn insert(&mut self, record: &Record) -> Result<(), String> {
        let params = [
            Value::Text(record.client_ip.to_string()),
            Value::Integer(record.date.unix_millis()),
            Value::Text(record.page.clone()),
        ];
        self.conn
            .execute(
                "INSERT INTO visits (client_ip, date_ms, page) VALUES (?, ?, ?)",
                &params,
            )
            .map(|_| ())
            .map_err(|e| format!("sqlite: insert failed: {e}"))
    }

    fn latest(&mut self, limit: usize) -> Result<Listing, String> {
        let result = self
            .conn
            .execute(
                "SELECT id, client_ip, date_ms, page FROM visits ORDER BY date_ms DESC, id DESC LIMIT ?",
                &[Value::Integer(limit as i64)],
            )
            .map_err(|e| format!("sqlite: query failed: {e}"))?;
        // A row we did not write (table edited by hand) is skipped and counted, as a bad
        // MongoDB document is.
        let (listing, messages) = Listing::decode(
            result.rows(),
            |row| {
                let ip = row.get::<&str>("client_ip").and_then(parse_addr);
                let date = row.get::<i64>("date_ms").map(UtcTime::from_unix_millis);
                let page = row.get::<&str>("page").filter(|p| validate_page(p).is_ok());
                match (ip, date, page) {
                    (Some(client_ip), Some(date), Some(page)) => Ok(Record {
                        client_ip,
                        date,
                        page: page.to_string(),
                    }),
                    _ => Err(RecordError(
                        "a column is missing, of the wrong type or invalid".into(),
                    )),
                }
            },
            |row| format!("id {}", row.get::<i64>("id").unwrap_or(-1)),
            &crate::LOGGED,
        );
        crate::log_skipped("sqlite", messages);
        Ok(listing)
    }
}
