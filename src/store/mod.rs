//! The durable store: stock batches (the outbox of asynchronous stock lists), their error
//! reports, and the ledger of used signatures.
//!
//! One store, two databases: an embedded SQLite file (the default; one bridge instance) and
//! PostgreSQL (several instances share the queue, the batch states, the reports and the
//! signature ledger). Everything is written once for both: the migrations ([`MIGRATIONS`]), the
//! statements ([`Statements`], in one dialect with `$n` parameters, adapted per database when
//! the store opens), and the row mappings ([`Batch::from_row`], [`Report::from_row`]). What
//! differs is only how a statement runs (`sqlite.rs`, `postgres.rs`): each turns its database's
//! rows into [`Cell`]s.
//!
//! Every state change is one statement; a batch is worked on only by the instance holding its
//! lease, and a lease whose holder died expires and the batch is claimed again.

mod ledger;
mod postgres;
mod sqlite;

use std::sync::Arc;

use serde_json::Value;

use crate::config::{StockAction, StockList};

/// A store failure: the bridge's problem (its database), never the caller's.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

pub type Result<T> = std::result::Result<T, StoreError>;

/// States of a batch, in order. `Done` and `Fail` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    Initialized,
    Commit,
    SentToRemote,
    Ongoing,
    Done,
    Fail,
}

impl BatchStatus {
    pub const ALL: [BatchStatus; 6] = [
        BatchStatus::Initialized,
        BatchStatus::Commit,
        BatchStatus::SentToRemote,
        BatchStatus::Ongoing,
        BatchStatus::Done,
        BatchStatus::Fail,
    ];

    /// The name clients and the store use (Akinon's).
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Initialized => "initialized",
            BatchStatus::Commit => "commit",
            BatchStatus::SentToRemote => "sent_to_remote",
            BatchStatus::Ongoing => "ongoing",
            BatchStatus::Done => "done",
            BatchStatus::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<BatchStatus> {
        BatchStatus::ALL.into_iter().find(|b| b.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, BatchStatus::Done | BatchStatus::Fail)
    }
}

impl std::fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch to record.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// The idempotency key the backend receives with every delivery of the batch.
    pub key: String,
    pub action: StockAction,
    pub list: StockList,
    pub items: Value,
    pub success_log: bool,
    pub now: i64,
}

/// A recorded batch. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    pub key: String,
    pub action: StockAction,
    pub list: StockList,
    pub status: BatchStatus,
    pub items: Value,
    /// The request as sent to the backend (for error reports).
    pub request: Option<Value>,
    pub remote_id: Option<String>,
    /// Per-item results: `[{sku, warehouse, status, remote_id, message}]`.
    pub results: Option<Value>,
    pub success_log: bool,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub modified_at: i64,
    pub sent_at: Option<i64>,
    pub done_at: Option<i64>,
}

/// An error report (or, when the caller asked for success logs, a success report).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub id: i64,
    pub batch_id: Option<i64>,
    pub action_content_type: String,
    pub action_object_id: String,
    pub raw_request: String,
    pub raw_response: String,
    pub error_code: String,
    pub error_description: String,
    pub is_ok: bool,
    pub target_content_type: String,
    pub target_object_id: String,
    pub modified_date: i64,
}

/// A statement's parameter, for either database.
#[derive(Debug, Clone)]
enum Param {
    Int(i64),
    Text(String),
    Bool(bool),
    Null,
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Param::Bool(v)
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_string())
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}
impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// A value of a result row, from either database.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

/// One result row, read by column position.
struct Row(Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError(format!("a row has no column {i}")))
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            other => Err(StoreError(format!(
                "column {i}: {other:?} is not an integer"
            ))),
        }
    }

    fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError(format!("column {i} is null")))
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            other => Err(StoreError(format!("column {i}: {other:?} is not text"))),
        }
    }

    fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError(format!("column {i} is null")))
    }

    /// A boolean: PostgreSQL's, or SQLite's 0/1.
    fn bool(&self, i: usize) -> Result<bool> {
        match self.cell(i)? {
            Cell::Bool(b) => Ok(*b),
            Cell::Int(v) => Ok(*v != 0),
            other => Err(StoreError(format!(
                "column {i}: {other:?} is not a boolean"
            ))),
        }
    }

    fn json(&self, i: usize) -> Result<Option<Value>> {
        self.opt_text(i)?
            .map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError(format!("column {i} is not JSON: {e}")))
            })
            .transpose()
    }
}

impl Batch {
    /// The columns of [`BATCH_COLUMNS`], in order.
    fn from_row(r: &Row) -> Result<Batch> {
        let enumerated = |i: usize, what: &str, found: &str| {
            StoreError(format!("column {i}: unknown {what} '{found}'"))
        };
        let (action, list, status) = (r.text(2)?, r.text(3)?, r.text(4)?);
        Ok(Batch {
            id: r.int(0)?,
            key: r.text(1)?,
            action: StockAction::parse(&action).ok_or_else(|| enumerated(2, "action", &action))?,
            list: StockList::parse(&list).ok_or_else(|| enumerated(3, "list", &list))?,
            status: BatchStatus::parse(&status).ok_or_else(|| enumerated(4, "status", &status))?,
            items: r.json(5)?.unwrap_or_default(),
            request: r.json(6)?,
            remote_id: r.opt_text(7)?,
            results: r.json(8)?,
            success_log: r.bool(9)?,
            attempts: r.int(10)?,
            next_at: r.int(11)?,
            last_error: r.opt_text(12)?,
            created_at: r.int(13)?,
            modified_at: r.int(14)?,
            sent_at: r.opt_int(15)?,
            done_at: r.opt_int(16)?,
        })
    }
}

impl Report {
    /// The columns of [`REPORT_COLUMNS`], in order.
    fn from_row(r: &Row) -> Result<Report> {
        Ok(Report {
            id: r.int(0)?,
            batch_id: r.opt_int(1)?,
            action_content_type: r.text(2)?,
            action_object_id: r.text(3)?,
            raw_request: r.text(4)?,
            raw_response: r.text(5)?,
            error_code: r.text(6)?,
            error_description: r.text(7)?,
            is_ok: r.bool(8)?,
            target_content_type: r.text(9)?,
            target_object_id: r.text(10)?,
            modified_date: r.int(11)?,
        })
    }
}

/// The migrations, in order; the store records how many it has applied. Written once for both
/// databases: `{id}` is the key column's type, `{bool}` a boolean's, `{s}` the schema prefix.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE {s}sb_batches (
        id {id},
        batch_key TEXT NOT NULL UNIQUE,
        action TEXT NOT NULL,
        list TEXT NOT NULL,
        status TEXT NOT NULL,
        items TEXT NOT NULL,
        request TEXT,
        remote_id TEXT,
        results TEXT,
        success_log {bool} NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_at BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        modified_at BIGINT NOT NULL,
        sent_at BIGINT,
        done_at BIGINT
    )",
    "CREATE INDEX sb_batches_due ON {s}sb_batches (status, next_at)",
    "CREATE TABLE {s}sb_reports (
        id {id},
        batch_id BIGINT,
        action_content_type TEXT NOT NULL,
        action_object_id TEXT NOT NULL,
        raw_request TEXT NOT NULL,
        raw_response TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error_description TEXT NOT NULL,
        is_ok {bool} NOT NULL,
        target_content_type TEXT NOT NULL,
        target_object_id TEXT NOT NULL,
        modified_date BIGINT NOT NULL
    )",
    "CREATE INDEX sb_reports_batch ON {s}sb_reports (batch_id)",
    "CREATE TABLE {s}sb_signatures (
        sign TEXT NOT NULL,
        time BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (sign, time)
    )",
    "CREATE INDEX sb_signatures_expiry ON {s}sb_signatures (expires_at)",
    "CREATE TABLE {s}sb_sessions (
        id_digest TEXT NOT NULL PRIMARY KEY,
        user_name TEXT NOT NULL,
        profiles TEXT NOT NULL,
        last_used BIGINT NOT NULL
    )",
    "CREATE INDEX sb_sessions_last_used ON {s}sb_sessions (last_used)",
];

/// The columns of a batch, in the order [`Batch::from_row`] reads them.
const BATCH_COLUMNS: &str = "id, batch_key, action, list, status, items, request, remote_id, results, success_log, attempts, next_at, last_error, created_at, modified_at, sent_at, done_at";

/// The columns of a report, in the order [`Report::from_row`] reads them.
const REPORT_COLUMNS: &str = "id, batch_id, action_content_type, action_object_id, raw_request, raw_response, error_code, error_description, is_ok, target_content_type, target_object_id, modified_date";

/// Every statement, written once: `{s}` is the schema prefix, `{lock}` what a claim adds to
/// lock the rows it takes (PostgreSQL's `FOR UPDATE SKIP LOCKED`), `{batch}`/`{report}` the
/// column lists; parameters are `$n` (SQLite gets `?n`).
#[derive(Debug)]
struct Statements {
    insert_batch: String,
    claim: String,
    save: String,
    release_all: String,
    batch: String,
    batches: String,
    counts: String,
    oldest_pending: String,
    add_report: String,
    reports: String,
    session_open: String,
    session_use: String,
    session_close: String,
    session_purge: String,
    session_count: String,
}

/// What a database's SQL needs adapted.
#[derive(Debug, Clone)]
struct Dialect {
    schema_prefix: String,
    lock: &'static str,
    /// How parameters are numbered: `$1` or `?1`.
    numbered: char,
}

impl Dialect {
    /// SQLite's: no schema, no row locks, `?n` parameters.
    fn sqlite() -> Dialect {
        Dialect {
            schema_prefix: String::new(),
            lock: "",
            numbered: '?',
        }
    }
}

impl Statements {
    fn new(d: &Dialect) -> Statements {
        let sql = |text: &str| {
            text.replace("{s}", &d.schema_prefix)
                .replace("{lock}", d.lock)
                .replace("{batch}", BATCH_COLUMNS)
                .replace("{report}", REPORT_COLUMNS)
                .replace('$', &d.numbered.to_string())
        };
        Statements {
            insert_batch: sql(
                "INSERT INTO {s}sb_batches (batch_key, action, list, status, items, success_log, attempts, next_at, created_at, modified_at)
                 VALUES ($1, $2, $3, 'initialized', $4, $5, 0, $6, $6, $6) RETURNING id",
            ),
            // A claimed `initialized` batch becomes `commit`: the claim commits it to delivery.
            claim: sql(
                "UPDATE {s}sb_batches SET lease_owner = $1, lease_until = $2,
                        status = CASE WHEN status = 'initialized' THEN 'commit' ELSE status END
                 WHERE id IN (SELECT id FROM {s}sb_batches
                              WHERE status IN ('initialized', 'commit', 'sent_to_remote', 'ongoing')
                                AND next_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
                              ORDER BY next_at, id LIMIT $4{lock})
                 RETURNING {batch}",
            ),
            save: sql(
                "UPDATE {s}sb_batches SET status = $1, request = $2, remote_id = $3, results = $4, attempts = $5,
                        next_at = $6, last_error = $7, modified_at = $8, sent_at = $9, done_at = $10,
                        lease_owner = CASE WHEN $11 THEN NULL ELSE lease_owner END,
                        lease_until = CASE WHEN $11 THEN NULL ELSE lease_until END
                 WHERE id = $12 AND lease_owner = $13",
            ),
            release_all: sql(
                "UPDATE {s}sb_batches SET lease_owner = NULL, lease_until = NULL WHERE lease_owner LIKE $1 || '#%'",
            ),
            batch: sql("SELECT {batch} FROM {s}sb_batches WHERE id = $1"),
            batches: sql(
                "SELECT {batch} FROM {s}sb_batches WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
            ),
            counts: sql("SELECT status, COUNT(*) FROM {s}sb_batches GROUP BY status"),
            oldest_pending: sql(
                "SELECT MIN(created_at) FROM {s}sb_batches WHERE status NOT IN ('done', 'fail')",
            ),
            add_report: sql(
                "INSERT INTO {s}sb_reports (batch_id, action_content_type, action_object_id, raw_request, raw_response,
                                            error_code, error_description, is_ok, target_content_type, target_object_id, modified_date)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            ),
            reports: sql(
                "SELECT {report} FROM {s}sb_reports WHERE (CAST($1 AS BIGINT) IS NULL OR batch_id = $1) ORDER BY id DESC LIMIT $2",
            ),
            session_open: sql(
                "INSERT INTO {s}sb_sessions (id_digest, user_name, profiles, last_used) VALUES ($1, $2, $3, $4)",
            ),
            session_use: sql(
                "UPDATE {s}sb_sessions SET last_used = $2 WHERE id_digest = $1 AND last_used > $3
                 RETURNING user_name, profiles",
            ),
            session_close: sql("DELETE FROM {s}sb_sessions WHERE id_digest = $1"),
            session_purge: sql("DELETE FROM {s}sb_sessions WHERE last_used <= $1"),
            session_count: sql("SELECT COUNT(*) FROM {s}sb_sessions"),
        }
    }
}

#[derive(Debug)]
enum Db {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Db {
    async fn execute(&self, sql: &str, params: Vec<Param>) -> Result<u64> {
        match self {
            Db::Sqlite(d) => d.execute(sql, params, false).await,
            Db::Postgres(d) => d.execute(sql, params).await,
        }
    }

    async fn query(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        match self {
            Db::Sqlite(d) => d.query(sql, params, false).await,
            Db::Postgres(d) => d.query(sql, params).await,
        }
    }

    /// [`Db::execute`] for the signature ledger (SQLite gives it a connection of its own).
    async fn execute_ledger(&self, sql: &str, params: Vec<Param>) -> Result<u64> {
        match self {
            Db::Sqlite(d) => d.execute(sql, params, true).await,
            Db::Postgres(d) => d.execute(sql, params).await,
        }
    }

    /// [`Db::query`] for the signature ledger.
    async fn query_ledger(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>> {
        match self {
            Db::Sqlite(d) => d.query(sql, params, true).await,
            Db::Postgres(d) => d.query(sql, params).await,
        }
    }

    async fn query_one(&self, sql: &str, params: Vec<Param>) -> Result<Row> {
        self.query(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError("the statement returned no row".into()))
    }
}

/// The store: one database, its statements, and the signature ledger's writer.
#[derive(Debug)]
pub struct Store {
    db: Arc<Db>,
    sql: Statements,
    ledger: ledger::Ledger,
}

impl Store {
    /// Opens (and creates or migrates) the store at `url`: `sqlite:<path>` or
    /// `postgres://...`. `schema` names the PostgreSQL schema holding the tables.
    pub async fn open(url: &str, schema: &str) -> Result<Store> {
        let (db, dialect) = if let Some(path) = url.strip_prefix("sqlite:") {
            let db = sqlite::Sqlite::open(path).await?;
            (Db::Sqlite(db), Dialect::sqlite())
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let db = postgres::Postgres::open(url, schema).await?;
            let dialect = Dialect {
                schema_prefix: format!("\"{schema}\"."),
                lock: " FOR UPDATE SKIP LOCKED",
                numbered: '$',
            };
            (Db::Postgres(db), dialect)
        } else {
            return Err(StoreError(format!(
                "'{}' is not a store URL (sqlite:<path> or postgres://...)",
                without_password(url)
            )));
        };
        let db = Arc::new(db);
        let ledger = ledger::Ledger::start(
            db.clone(),
            ledger::LedgerSql {
                schema_prefix: dialect.schema_prefix.clone(),
                numbered: dialect.numbered,
            },
        );
        Ok(Store {
            db,
            sql: Statements::new(&dialect),
            ledger,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.db.as_ref() {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Drops a PostgreSQL store's schema with everything in it (tests and benchmarks clean up
    /// with it); an SQLite store is left as it is.
    pub async fn drop_schema(&self) -> Result<()> {
        match self.db.as_ref() {
            Db::Postgres(p) => p.drop_schema().await,
            Db::Sqlite(_) => Ok(()),
        }
    }

    /// Records a batch in state `initialized`; returns its id. Durable when this returns.
    pub async fn insert_batch(&self, b: &NewBatch) -> Result<i64> {
        let params = vec![
            b.key.as_str().into(),
            b.action.as_str().into(),
            b.list.as_str().into(),
            Param::Text(b.items.to_string()),
            b.success_log.into(),
            b.now.into(),
        ];
        self.db
            .query_one(&self.sql.insert_batch, params)
            .await?
            .int(0)
    }

    /// Claims up to `limit` batches that are due and not leased (or whose lease expired) for
    /// `owner` until `now + lease_ms`. A claimed `initialized` batch becomes `commit`.
    pub async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Batch>> {
        let params = vec![
            owner.into(),
            (now + lease_ms).into(),
            now.into(),
            limit.into(),
        ];
        let mut got = self
            .db
            .query(&self.sql.claim, params)
            .await?
            .iter()
            .map(Batch::from_row)
            .collect::<Result<Vec<_>>>()?;
        got.sort_by_key(|b| (b.next_at, b.id));
        Ok(got)
    }

    /// Writes a claimed batch's state, only while `owner` still holds its lease; with
    /// `release` the lease ends. `false`: the lease was lost (the batch belongs to another).
    pub async fn save(&self, owner: &str, b: &Batch, release: bool) -> Result<bool> {
        let params = vec![
            b.status.as_str().into(),
            b.request.as_ref().map(|v| v.to_string()).into(),
            b.remote_id.clone().into(),
            b.results.as_ref().map(|v| v.to_string()).into(),
            b.attempts.into(),
            b.next_at.into(),
            b.last_error.clone().into(),
            b.modified_at.into(),
            b.sent_at.into(),
            b.done_at.into(),
            release.into(),
            b.id.into(),
            owner.into(),
        ];
        Ok(self.db.execute(&self.sql.save, params).await? == 1)
    }

    /// Ends every lease `owner` holds (graceful shutdown).
    pub async fn release_all(&self, owner: &str) -> Result<u64> {
        self.db
            .execute(&self.sql.release_all, vec![owner.into()])
            .await
    }

    pub async fn batch(&self, id: i64) -> Result<Option<Batch>> {
        self.db
            .query(&self.sql.batch, vec![id.into()])
            .await?
            .first()
            .map(Batch::from_row)
            .transpose()
    }

    /// Batches, newest first, optionally of one status.
    pub async fn batches(&self, status: Option<BatchStatus>, limit: i64) -> Result<Vec<Batch>> {
        let params = vec![status.map(BatchStatus::as_str).into(), limit.into()];
        self.db
            .query(&self.sql.batches, params)
            .await?
            .iter()
            .map(Batch::from_row)
            .collect()
    }

    /// How many batches are in each state.
    pub async fn counts(&self) -> Result<Vec<(BatchStatus, i64)>> {
        self.db
            .query(&self.sql.counts, Vec::new())
            .await?
            .iter()
            .map(|r| {
                let s = r.text(0)?;
                let status = BatchStatus::parse(&s)
                    .ok_or_else(|| StoreError(format!("unknown status '{s}'")))?;
                Ok((status, r.int(1)?))
            })
            .collect()
    }

    /// When the oldest batch not yet done or failed was accepted (epoch ms), if there is one.
    pub async fn oldest_pending(&self) -> Result<Option<i64>> {
        self.db
            .query_one(&self.sql.oldest_pending, Vec::new())
            .await?
            .opt_int(0)
    }

    pub async fn add_report(&self, r: &Report) -> Result<i64> {
        let params = vec![
            r.batch_id.into(),
            r.action_content_type.as_str().into(),
            r.action_object_id.as_str().into(),
            r.raw_request.as_str().into(),
            r.raw_response.as_str().into(),
            r.error_code.as_str().into(),
            r.error_description.as_str().into(),
            r.is_ok.into(),
            r.target_content_type.as_str().into(),
            r.target_object_id.as_str().into(),
            r.modified_date.into(),
        ];
        self.db
            .query_one(&self.sql.add_report, params)
            .await?
            .int(0)
    }

    /// Reports, newest first, optionally of one batch.
    pub async fn reports(&self, batch_id: Option<i64>, limit: i64) -> Result<Vec<Report>> {
        self.db
            .query(&self.sql.reports, vec![batch_id.into(), limit.into()])
            .await?
            .iter()
            .map(Report::from_row)
            .collect()
    }

    /// Opens a login session (keyed by a digest of its id, never the id) unless `max` are open
    /// and unexpired; `false` when full. Expired sessions are removed first.
    pub async fn session_open(
        &self,
        digest: &str,
        user: &str,
        profiles: &[String],
        now: i64,
        idle_ms: i64,
        max: i64,
    ) -> Result<bool> {
        self.db
            .execute(&self.sql.session_purge, vec![(now - idle_ms).into()])
            .await?;
        let open = self
            .db
            .query_one(&self.sql.session_count, Vec::new())
            .await?
            .int(0)?;
        if open >= max {
            return Ok(false);
        }
        let params = vec![
            digest.into(),
            user.into(),
            profiles.join("\n").into(),
            now.into(),
        ];
        self.db.execute(&self.sql.session_open, params).await?;
        Ok(true)
    }

    /// The user and profiles of an unexpired session, which using it keeps open.
    pub async fn session_use(
        &self,
        digest: &str,
        now: i64,
        idle_ms: i64,
    ) -> Result<Option<(String, Vec<String>)>> {
        let params = vec![digest.into(), now.into(), (now - idle_ms).into()];
        let rows = self.db.query(&self.sql.session_use, params).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let profiles = r.text(1)?.split('\n').map(str::to_string).collect();
        Ok(Some((r.text(0)?, profiles)))
    }

    /// Ends a session; whether it was open.
    pub async fn session_close(&self, digest: &str) -> Result<bool> {
        Ok(self
            .db
            .execute(&self.sql.session_close, vec![digest.into()])
            .await?
            > 0)
    }

    /// Records a signature; `false` when it was already recorded and has not expired. Calls
    /// made at the same time share one write (see `ledger`); each is answered once its
    /// signature is durable.
    pub async fn first_use(
        &self,
        sign: &str,
        time: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        self.ledger.first_use(sign, time, expires_at, now).await
    }
}

/// A database URL fit for messages: user info (which may hold a password) replaced.
pub fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
