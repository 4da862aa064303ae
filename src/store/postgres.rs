//! The shared store: PostgreSQL, for several bridge instances. Tables live in a schema of their
//! own (created on start; migrations run under an advisory lock, so instances starting together
//! migrate once). Claims use `FOR UPDATE SKIP LOCKED`: two instances never claim the same batch.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Row};

use super::{
    ACTIVE, BATCH_COLUMNS, Batch, MIGRATIONS, NewBatch, REPORT_COLUMNS, Report, Result, StoreError,
    json_text, parse_json,
};

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool,
    /// Signatures recorded; every 256th also forgets the expired ones.
    signatures: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// `"schema".` for table names.
    s: String,
    schema: String,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("postgres: {e}"))
}

fn batch_row(r: &Row) -> Batch {
    Batch {
        id: r.get(0),
        key: r.get(1),
        action: r.get(2),
        list: r.get(3),
        status: r.get(4),
        items: parse_json(r.get(5)).unwrap_or_default(),
        request: parse_json(r.get(6)),
        remote_id: r.get(7),
        results: parse_json(r.get(8)),
        success_log: r.get(9),
        attempts: r.get(10),
        next_at: r.get(11),
        last_error: r.get(12),
        created_at: r.get(13),
        modified_at: r.get(14),
        sent_at: r.get(15),
        done_at: r.get(16),
    }
}

fn report_row(r: &Row) -> Report {
    Report {
        id: r.get(0),
        batch_id: r.get(1),
        action_content_type: r.get(2),
        action_object_id: r.get(3),
        raw_request: r.get(4),
        raw_response: r.get(5),
        error_code: r.get(6),
        error_description: r.get(7),
        is_ok: r.get(8),
        target_content_type: r.get(9),
        target_object_id: r.get(10),
        modified_date: r.get(11),
    }
}

impl PgStore {
    pub async fn open(url: &str, schema: &str) -> Result<PgStore> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(err(format!(
                "schema '{schema}' must be letters, digits and '_'"
            )));
        }
        let mut cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| err(format!("{}: {e}", super::without_password(url))))?;
        // A statement may take 10 s at most; a connection 5 s to open.
        cfg.options("-c statement_timeout=10000");
        cfg.connect_timeout(std::time::Duration::from_secs(5));
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .map_err(err)?;
        let store = PgStore {
            pool,
            signatures: Default::default(),
            s: format!("\"{schema}\"."),
            schema: schema.to_string(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(err)
    }

    async fn migrate(&self) -> Result<()> {
        let c = self.client().await?;
        let lock = format!("soapbridge:{}", self.schema);
        c.execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock])
            .await
            .map_err(err)?;
        let result = async {
            c.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{0}\"; CREATE TABLE IF NOT EXISTS {1}sb_schema (version INTEGER NOT NULL)",
                self.schema, self.s
            ))
            .await
            .map_err(err)?;
            let version: i32 = c
                .query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {}sb_schema", self.s), &[])
                .await
                .map_err(err)?
                .get(0);
            for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                let sql = m
                    .replace("{id}", "BIGSERIAL PRIMARY KEY")
                    .replace("{bool}", "BOOLEAN")
                    .replace("{s}", &self.s);
                // Each migration and its version row in one transaction (DDL is transactional).
                c.batch_execute(&format!(
                    "BEGIN; {sql}; INSERT INTO {}sb_schema (version) VALUES ({}); COMMIT",
                    self.s,
                    i + 1
                ))
                .await
                .map_err(|e| err(format!("migration {}: {e}", i + 1)))?;
            }
            Ok(())
        }
        .await;
        let _ = c
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock])
            .await;
        result
    }

    /// Drops the schema (tests).
    pub async fn drop_schema(&self) -> Result<()> {
        self.client()
            .await?
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await
            .map_err(err)
    }

    pub async fn insert_batch(&self, b: &NewBatch) -> Result<i64> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO {}sb_batches (batch_key, action, list, status, items, success_log, attempts, next_at, created_at, modified_at)
                     VALUES ($1, $2, $3, 'initialized', $4, $5, 0, $6, $6, $6) RETURNING id",
                    self.s
                ),
                &[&b.key, &b.action, &b.list, &json_text(&b.items), &b.success_log, &b.now],
            )
            .await
            .map_err(err)?;
        Ok(row.get(0))
    }

    pub async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Batch>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "UPDATE {s}sb_batches SET lease_owner = $1, lease_until = $2,
                            status = CASE WHEN status = 'initialized' THEN 'commit' ELSE status END
                     WHERE id IN (SELECT id FROM {s}sb_batches
                                  WHERE status IN {ACTIVE} AND next_at <= $3
                                    AND (lease_until IS NULL OR lease_until < $3)
                                  ORDER BY next_at, id LIMIT $4
                                  FOR UPDATE SKIP LOCKED)
                     RETURNING {BATCH_COLUMNS}",
                    s = self.s
                ),
                &[&owner, &(now + lease_ms), &now, &limit],
            )
            .await
            .map_err(err)?;
        let mut got: Vec<Batch> = rows.iter().map(batch_row).collect();
        got.sort_by_key(|b| (b.next_at, b.id));
        Ok(got)
    }

    pub async fn save(&self, owner: &str, b: &Batch, release: bool) -> Result<bool> {
        let c = self.client().await?;
        let request = b.request.as_ref().map(json_text);
        let results = b.results.as_ref().map(json_text);
        let n = c
            .execute(
                &format!(
                    "UPDATE {}sb_batches SET status = $1, request = $2, remote_id = $3, results = $4, attempts = $5,
                            next_at = $6, last_error = $7, modified_at = $8, sent_at = $9, done_at = $10,
                            lease_owner = CASE WHEN $11 THEN NULL ELSE lease_owner END,
                            lease_until = CASE WHEN $11 THEN NULL ELSE lease_until END
                     WHERE id = $12 AND lease_owner = $13",
                    self.s
                ),
                &[
                    &b.status,
                    &request,
                    &b.remote_id,
                    &results,
                    &b.attempts,
                    &b.next_at,
                    &b.last_error,
                    &b.modified_at,
                    &b.sent_at,
                    &b.done_at,
                    &release,
                    &b.id,
                    &owner,
                ],
            )
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    pub async fn release_all(&self, owner: &str) -> Result<u64> {
        self.client()
            .await?
            .execute(
                &format!(
                    "UPDATE {}sb_batches SET lease_owner = NULL, lease_until = NULL WHERE lease_owner LIKE $1 || '#%'",
                    self.s
                ),
                &[&owner],
            )
            .await
            .map_err(err)
    }

    pub async fn batch(&self, id: i64) -> Result<Option<Batch>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM {}sb_batches WHERE id = $1",
                    self.s
                ),
                &[&id],
            )
            .await
            .map_err(err)?;
        Ok(row.as_ref().map(batch_row))
    }

    pub async fn batches(&self, status: Option<&str>, limit: i64) -> Result<Vec<Batch>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM {}sb_batches WHERE ($1::TEXT IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
                    self.s
                ),
                &[&status, &limit],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(batch_row).collect())
    }

    pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT status, COUNT(*) FROM {}sb_batches GROUP BY status",
                    self.s
                ),
                &[],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn add_report(&self, r: &Report) -> Result<i64> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &format!(
                    "INSERT INTO {}sb_reports (batch_id, action_content_type, action_object_id, raw_request, raw_response,
                                               error_code, error_description, is_ok, target_content_type, target_object_id, modified_date)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                    self.s
                ),
                &[
                    &r.batch_id,
                    &r.action_content_type,
                    &r.action_object_id,
                    &r.raw_request,
                    &r.raw_response,
                    &r.error_code,
                    &r.error_description,
                    &r.is_ok,
                    &r.target_content_type,
                    &r.target_object_id,
                    &r.modified_date,
                ],
            )
            .await
            .map_err(err)?;
        Ok(row.get(0))
    }

    pub async fn reports(&self, batch_id: Option<i64>, limit: i64) -> Result<Vec<Report>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {REPORT_COLUMNS} FROM {}sb_reports WHERE ($1::BIGINT IS NULL OR batch_id = $1) ORDER BY id DESC LIMIT $2",
                    self.s
                ),
                &[&batch_id, &limit],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(report_row).collect())
    }

    pub async fn first_use(
        &self,
        sign: &str,
        time: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                &format!(
                    "INSERT INTO {s}sb_signatures (sign, time, expires_at) VALUES ($1, $2, $3)
                     ON CONFLICT (sign, time) DO UPDATE SET expires_at = EXCLUDED.expires_at
                     WHERE {s}sb_signatures.expires_at < $4",
                    s = self.s
                ),
                &[&sign, &time, &expires_at, &now],
            )
            .await
            .map_err(err)?;
        if self
            .signatures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(256)
        {
            c.execute(
                &format!("DELETE FROM {}sb_signatures WHERE expires_at < $1", self.s),
                &[&now],
            )
            .await
            .map_err(err)?;
        }
        Ok(n == 1)
    }
}
