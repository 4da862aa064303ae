//! The embedded store: one SQLite file (WAL journal), created on first start. Statements run on
//! tokio's blocking pool, one at a time on the one connection. A process killed at any point
//! loses nothing committed (WAL with `synchronous=NORMAL` is durable against process crashes;
//! a power cut may lose the last transactions).

use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params};

use super::{Cell, MIGRATIONS, Param, Result, Row, StoreError};

#[derive(Debug, Clone)]
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("sqlite: {e}"))
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Int(v) => ToSqlOutput::from(*v),
            Param::Text(v) => ToSqlOutput::from(v.as_str()),
            Param::Bool(v) => ToSqlOutput::from(*v),
            Param::Null => ToSqlOutput::from(rusqlite::types::Null),
        })
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let n = r.as_ref().column_count();
    let mut cells = Vec::with_capacity(n);
    for i in 0..n {
        cells.push(match r.get_ref(i)? {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(v) => Cell::Int(v),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Real(v) => Cell::Text(v.to_string()),
            ValueRef::Blob(b) => Cell::Text(String::from_utf8_lossy(b).into_owned()),
        });
    }
    Ok(Row(cells))
}

impl Sqlite {
    pub(super) async fn open(path: &str) -> Result<Sqlite> {
        let path = path.to_string();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            if let Some(dir) = std::path::Path::new(&path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
            }
            let mut c = Connection::open(&path).map_err(|e| err(format!("{path}: {e}")))?;
            c.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
            c.pragma_update(None, "synchronous", "NORMAL")
                .map_err(err)?;
            c.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(err)?;
            migrate(&mut c)?;
            Ok(c)
        })
        .await
        .map_err(err)??;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(err)?
        .map_err(err)
    }

    pub(super) async fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64> {
        let sql = sql.to_string();
        self.run(move |c| {
            c.prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(params.iter()))
                .map(|n| n as u64)
        })
        .await
    }

    pub(super) async fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        let sql = sql.to_string();
        self.run(move |c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(params.iter()), row)?;
            rows.collect()
        })
        .await
    }
}

fn migrate(c: &mut Connection) -> Result<()> {
    let tx = c.transaction().map_err(err)?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS sb_schema (version INTEGER NOT NULL)",
        [],
    )
    .map_err(err)?;
    let version: i64 = tx
        .query_row("SELECT COALESCE(MAX(version), 0) FROM sb_schema", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let sql = m
            .replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT")
            .replace("{bool}", "INTEGER")
            .replace("{s}", "");
        tx.execute(&sql, [])
            .map_err(|e| err(format!("migration {}: {e}", i + 1)))?;
        tx.execute(
            "INSERT INTO sb_schema (version) VALUES (?1)",
            params![i as i64 + 1],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}
