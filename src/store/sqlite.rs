//! The embedded store: one SQLite file (WAL journal), created on first start. A process killed
//! at any point loses nothing committed (WAL with `synchronous=NORMAL` is durable against
//! process crashes; a power cut may lose the last transactions).
//!
//! Each connection has a thread of its own that runs the statements sent to it, in order: one
//! for batches and reports, one for the signature ledger (so that a call's signature never waits
//! behind a batch), and one that checkpoints the WAL into the database every half second, so
//! that the fsync a checkpoint needs is never paid by a statement a caller waits for.

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::{Cell, MIGRATIONS, Param, Result, Row, StoreError};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A connection on a thread of its own; statements are sent to it.
#[derive(Debug, Clone)]
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    fn start(mut conn: Connection, name: &str) -> Result<Worker> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("sqlite-{name}"))
            .spawn(move || {
                // Ends when the store (every sender) is gone.
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(err)?;
        Ok(Worker { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move |c| {
                let _ = done.send(f(c));
            }))
            .map_err(|_| err("the connection's thread stopped"))?;
        result
            .await
            .map_err(|_| err("the connection's thread stopped"))?
            .map_err(err)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Sqlite {
    main: Worker,
    ledger: Worker,
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

/// A connection to the file, set up for the store: WAL, no checkpoints of its own (the
/// checkpointer does them), waiting up to 5 s for another connection's write.
fn connect(path: &str) -> Result<Connection> {
    let c = Connection::open(path).map_err(|e| err(format!("{path}: {e}")))?;
    c.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    c.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    c.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(err)?;
    c.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    // The planner does not look at bound values: otherwise a statement whose plan could
    // depend on one (the stock workers' claim, `next_at <= ?3`) is compiled again every time
    // a new value is bound, that is on every poll of an idle bridge.
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(err)?;
    Ok(c)
}

impl Sqlite {
    pub(super) async fn open(path: &str) -> Result<Sqlite> {
        let path = path.to_string();
        let (main, ledger, checkpoints) =
            tokio::task::spawn_blocking(move || -> Result<(Connection, Connection, Connection)> {
                if let Some(dir) = std::path::Path::new(&path).parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
                }
                let mut main = connect(&path)?;
                migrate(&mut main)?;
                Ok((main, connect(&path)?, connect(&path)?))
            })
            .await
            .map_err(err)??;
        let store = Sqlite {
            main: Worker::start(main, "store")?,
            ledger: Worker::start(ledger, "ledger")?,
        };
        checkpoint_every(checkpoints, Duration::from_millis(500), &store.main)?;
        Ok(store)
    }

    fn worker(&self, ledger: bool) -> &Worker {
        if ledger { &self.ledger } else { &self.main }
    }

    pub(super) async fn execute(&self, sql: &str, params: Vec<Param>, ledger: bool) -> Result<u64> {
        let sql = sql.to_string();
        self.worker(ledger)
            .run(move |c| {
                c.prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(params.iter()))
                    .map(|n| n as u64)
            })
            .await
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: Vec<Param>,
        ledger: bool,
    ) -> Result<Vec<Row>> {
        let sql = sql.to_string();
        self.worker(ledger)
            .run(move |c| {
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(rusqlite::params_from_iter(params.iter()), row)?;
                rows.collect()
            })
            .await
    }
}

/// Checkpoints the WAL into the database now and then, on a thread of its own, for as long as
/// the store's main connection lives.
fn checkpoint_every(conn: Connection, every: Duration, alive: &Worker) -> Result<()> {
    let alive = alive.jobs.clone();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                // The store is gone when its main connection's thread no longer takes jobs.
                if alive.send(Box::new(|_| {})).is_err() {
                    return;
                }
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })
        .map_err(err)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The stock workers claim with a new `now` on every poll: the statement must be compiled
    /// once, not again for each value (which an idle bridge would pay several times a second).
    #[test]
    fn the_claim_is_not_compiled_again_for_each_time_it_is_run_at() {
        let dir = std::env::temp_dir().join(format!("soapbridge-qpsg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("claim.db");
        let _ = std::fs::remove_file(&path);
        let mut c = connect(path.to_str().unwrap()).unwrap();
        migrate(&mut c).unwrap();
        let sql = super::super::Statements::new(&super::super::Dialect::sqlite()).claim;
        for now in [1_700_000_000_000i64, 1_700_000_000_100, 1_700_000_000_200] {
            let mut st = c.prepare_cached(&sql).unwrap();
            let rows = st
                .query_map(rusqlite::params!["owner", now + 1000, now, 10], |_| Ok(()))
                .unwrap()
                .count();
            assert_eq!(rows, 0);
            assert_eq!(
                st.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "the claim was compiled again for now = {now}"
            );
        }
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
