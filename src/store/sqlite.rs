//! The embedded store: one SQLite file (WAL journal), created on first start. Calls run on
//! tokio's blocking pool, one at a time per connection. A process killed at any point loses
//! nothing committed (WAL with `synchronous=NORMAL` is durable against process crashes; a
//! power cut may lose the last transactions).

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    ACTIVE, BATCH_COLUMNS, Batch, MIGRATIONS, NewBatch, REPORT_COLUMNS, Report, Result, StoreError,
    json_text, parse_json,
};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Signatures recorded; every 256th also forgets the expired ones.
    signatures: Arc<std::sync::atomic::AtomicU64>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("sqlite: {e}"))
}

fn batch_row(r: &Row<'_>) -> rusqlite::Result<Batch> {
    Ok(Batch {
        id: r.get(0)?,
        key: r.get(1)?,
        action: r.get(2)?,
        list: r.get(3)?,
        status: r.get(4)?,
        items: parse_json(r.get(5)?).unwrap_or_default(),
        request: parse_json(r.get(6)?),
        remote_id: r.get(7)?,
        results: parse_json(r.get(8)?),
        success_log: r.get(9)?,
        attempts: r.get(10)?,
        next_at: r.get(11)?,
        last_error: r.get(12)?,
        created_at: r.get(13)?,
        modified_at: r.get(14)?,
        sent_at: r.get(15)?,
        done_at: r.get(16)?,
    })
}

fn report_row(r: &Row<'_>) -> rusqlite::Result<Report> {
    Ok(Report {
        id: r.get(0)?,
        batch_id: r.get(1)?,
        action_content_type: r.get(2)?,
        action_object_id: r.get(3)?,
        raw_request: r.get(4)?,
        raw_response: r.get(5)?,
        error_code: r.get(6)?,
        error_description: r.get(7)?,
        is_ok: r.get(8)?,
        target_content_type: r.get(9)?,
        target_object_id: r.get(10)?,
        modified_date: r.get(11)?,
    })
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<SqliteStore> {
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
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            signatures: Default::default(),
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

    pub async fn insert_batch(&self, b: &NewBatch) -> Result<i64> {
        let b = b.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO sb_batches (batch_key, action, list, status, items, success_log, attempts, next_at, created_at, modified_at)
                 VALUES (?1, ?2, ?3, 'initialized', ?4, ?5, 0, ?6, ?6, ?6)",
                params![b.key, b.action, b.list, json_text(&b.items), b.success_log, b.now],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    pub async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Batch>> {
        let owner = owner.to_string();
        let mut got = self
            .run(move |c| {
                let sql = format!(
                    "UPDATE sb_batches SET lease_owner = ?1, lease_until = ?2,
                            status = CASE WHEN status = 'initialized' THEN 'commit' ELSE status END
                     WHERE id IN (SELECT id FROM sb_batches
                                  WHERE status IN {ACTIVE} AND next_at <= ?3
                                    AND (lease_until IS NULL OR lease_until < ?3)
                                  ORDER BY next_at, id LIMIT ?4)
                     RETURNING {BATCH_COLUMNS}"
                );
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(params![owner, now + lease_ms, now, limit], batch_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        got.sort_by_key(|b| (b.next_at, b.id));
        Ok(got)
    }

    pub async fn save(&self, owner: &str, b: &Batch, release: bool) -> Result<bool> {
        let owner = owner.to_string();
        let b = b.clone();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE sb_batches SET status = ?1, request = ?2, remote_id = ?3, results = ?4, attempts = ?5,
                        next_at = ?6, last_error = ?7, modified_at = ?8, sent_at = ?9, done_at = ?10,
                        lease_owner = CASE WHEN ?11 THEN NULL ELSE lease_owner END,
                        lease_until = CASE WHEN ?11 THEN NULL ELSE lease_until END
                 WHERE id = ?12 AND lease_owner = ?13",
                params![
                    b.status,
                    b.request.as_ref().map(json_text),
                    b.remote_id,
                    b.results.as_ref().map(json_text),
                    b.attempts,
                    b.next_at,
                    b.last_error,
                    b.modified_at,
                    b.sent_at,
                    b.done_at,
                    release,
                    b.id,
                    owner
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn release_all(&self, owner: &str) -> Result<u64> {
        let owner = owner.to_string();
        self.run(move |c| {
            c.execute(
                "UPDATE sb_batches SET lease_owner = NULL, lease_until = NULL WHERE lease_owner LIKE ?1 || '#%'",
                params![owner],
            )
            .map(|n| n as u64)
        })
        .await
    }

    pub async fn batch(&self, id: i64) -> Result<Option<Batch>> {
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {BATCH_COLUMNS} FROM sb_batches WHERE id = ?1"),
                params![id],
                batch_row,
            )
            .optional()
        })
        .await
    }

    pub async fn batches(&self, status: Option<&str>, limit: i64) -> Result<Vec<Batch>> {
        let status = status.map(str::to_string);
        self.run(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {BATCH_COLUMNS} FROM sb_batches WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![status, limit], batch_row)?;
            rows.collect()
        })
        .await
    }

    pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
        self.run(|c| {
            let mut st = c.prepare("SELECT status, COUNT(*) FROM sb_batches GROUP BY status")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    pub async fn add_report(&self, r: &Report) -> Result<i64> {
        let r = r.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO sb_reports (batch_id, action_content_type, action_object_id, raw_request, raw_response,
                                         error_code, error_description, is_ok, target_content_type, target_object_id, modified_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.batch_id,
                    r.action_content_type,
                    r.action_object_id,
                    r.raw_request,
                    r.raw_response,
                    r.error_code,
                    r.error_description,
                    r.is_ok,
                    r.target_content_type,
                    r.target_object_id,
                    r.modified_date
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    pub async fn reports(&self, batch_id: Option<i64>, limit: i64) -> Result<Vec<Report>> {
        self.run(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {REPORT_COLUMNS} FROM sb_reports WHERE (?1 IS NULL OR batch_id = ?1) ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![batch_id, limit], report_row)?;
            rows.collect()
        })
        .await
    }

    pub async fn first_use(
        &self,
        sign: &str,
        time: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let sign = sign.to_string();
        let sweep = self
            .signatures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(256);
        self.run(move |c| {
            let n = c.execute(
                "INSERT INTO sb_signatures (sign, time, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sign, time) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE sb_signatures.expires_at < ?4",
                params![sign, time, expires_at, now],
            )?;
            // Forget expired signatures now and then, so the table stays small.
            if sweep {
                c.execute(
                    "DELETE FROM sb_signatures WHERE expires_at < ?1",
                    params![now],
                )?;
            }
            Ok(n == 1)
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
