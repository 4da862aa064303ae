//! The durable store: stock batches (the outbox of asynchronous stock lists), their error
//! reports, and the shared signature-reuse cache.
//!
//! One interface, two implementations: an embedded SQLite file (the default; one bridge
//! instance) and PostgreSQL (several instances share the queue, the batch states, the reports
//! and the signature cache). The schema is created and migrated on start. Every state change is
//! one statement; a batch is worked on only by the instance holding its lease, and a lease whose
//! holder died expires and the batch is claimed again.

mod postgres;
mod sqlite;

use serde_json::Value;

/// A store failure: the bridge's problem (its database), never the caller's.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

pub type Result<T> = std::result::Result<T, StoreError>;

/// States of a batch, in order. `done` and `fail` are final.
pub const INITIALIZED: &str = "initialized";
pub const COMMIT: &str = "commit";
pub const SENT: &str = "sent_to_remote";
pub const ONGOING: &str = "ongoing";
pub const DONE: &str = "done";
pub const FAIL: &str = "fail";
pub const STATES: &[&str] = &[INITIALIZED, COMMIT, SENT, ONGOING, DONE, FAIL];

/// A batch to record.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// The idempotency key the backend receives with every delivery of the batch.
    pub key: String,
    pub action: String,
    pub list: String,
    pub items: Value,
    pub success_log: bool,
    pub now: i64,
}

/// A recorded batch. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    pub key: String,
    pub action: String,
    pub list: String,
    pub status: String,
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

#[derive(Debug)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (and creates or migrates) the store at `url`: `sqlite:<path>` or
    /// `postgres://...`. `schema` names the PostgreSQL schema holding the tables.
    pub async fn open(url: &str, schema: &str) -> Result<Store> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(path).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(postgres::PgStore::open(url, schema).await?))
        } else {
            Err(StoreError(format!(
                "'{}' is not a store URL (sqlite:<path> or postgres://...)",
                without_password(url)
            )))
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Records a batch in state `initialized`; returns its id. Durable when this returns.
    pub async fn insert_batch(&self, b: &NewBatch) -> Result<i64> {
        match self {
            Store::Sqlite(s) => s.insert_batch(b).await,
            Store::Postgres(s) => s.insert_batch(b).await,
        }
    }

    /// Claims up to `limit` batches that are due and not leased (or whose lease expired) for
    /// `owner` until `now + lease_ms`. A claimed `initialized` batch becomes `commit`: it is
    /// committed to delivery by the claim itself.
    pub async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Batch>> {
        match self {
            Store::Sqlite(s) => s.claim(owner, now, lease_ms, limit).await,
            Store::Postgres(s) => s.claim(owner, now, lease_ms, limit).await,
        }
    }

    /// Writes a claimed batch's state, only while `owner` still holds its lease; with
    /// `release` the lease ends. `false`: the lease was lost (the batch belongs to another).
    pub async fn save(&self, owner: &str, b: &Batch, release: bool) -> Result<bool> {
        match self {
            Store::Sqlite(s) => s.save(owner, b, release).await,
            Store::Postgres(s) => s.save(owner, b, release).await,
        }
    }

    /// Ends every lease `owner` holds (graceful shutdown).
    pub async fn release_all(&self, owner: &str) -> Result<u64> {
        match self {
            Store::Sqlite(s) => s.release_all(owner).await,
            Store::Postgres(s) => s.release_all(owner).await,
        }
    }

    pub async fn batch(&self, id: i64) -> Result<Option<Batch>> {
        match self {
            Store::Sqlite(s) => s.batch(id).await,
            Store::Postgres(s) => s.batch(id).await,
        }
    }

    /// Batches, newest first, optionally of one status.
    pub async fn batches(&self, status: Option<&str>, limit: i64) -> Result<Vec<Batch>> {
        match self {
            Store::Sqlite(s) => s.batches(status, limit).await,
            Store::Postgres(s) => s.batches(status, limit).await,
        }
    }

    /// How many batches are in each state.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
        match self {
            Store::Sqlite(s) => s.counts().await,
            Store::Postgres(s) => s.counts().await,
        }
    }

    pub async fn add_report(&self, r: &Report) -> Result<i64> {
        match self {
            Store::Sqlite(s) => s.add_report(r).await,
            Store::Postgres(s) => s.add_report(r).await,
        }
    }

    /// Reports, newest first, optionally of one batch.
    pub async fn reports(&self, batch_id: Option<i64>, limit: i64) -> Result<Vec<Report>> {
        match self {
            Store::Sqlite(s) => s.reports(batch_id, limit).await,
            Store::Postgres(s) => s.reports(batch_id, limit).await,
        }
    }

    /// Records a signature; `false` when it was already recorded and has not expired.
    pub async fn first_use(
        &self,
        sign: &str,
        time: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        match self {
            Store::Sqlite(s) => s.first_use(sign, time, expires_at, now).await,
            Store::Postgres(s) => s.first_use(sign, time, expires_at, now).await,
        }
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
];

/// The columns of a batch, in the order both implementations read them.
const BATCH_COLUMNS: &str = "id, batch_key, action, list, status, items, request, remote_id, results, success_log, attempts, next_at, last_error, created_at, modified_at, sent_at, done_at";

/// The columns of a report, in read order.
const REPORT_COLUMNS: &str = "id, batch_id, action_content_type, action_object_id, raw_request, raw_response, error_code, error_description, is_ok, target_content_type, target_object_id, modified_date";

/// A database URL fit for messages: user info (which may hold a password) replaced.
pub fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: Option<String>) -> Option<Value> {
    s.and_then(|t| serde_json::from_str(&t).ok())
}

/// Statuses a worker still has something to do for.
const ACTIVE: &str = "('initialized', 'commit', 'sent_to_remote', 'ongoing')";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shared suite every implementation must pass.
    pub async fn suite(store: &Store) {
        let now = 1_700_000_000_000;
        let nb = |key: &str| NewBatch {
            key: key.into(),
            action: "insert".into(),
            list: "main".into(),
            items: json!([{"sku": "A", "warehouse": "W", "quantity": 1}]),
            success_log: false,
            now,
        };
        let a = store.insert_batch(&nb("k-a")).await.unwrap();
        let b = store.insert_batch(&nb("k-b")).await.unwrap();
        assert!(b > a);
        // The same idempotency key twice is refused.
        assert!(store.insert_batch(&nb("k-a")).await.is_err());
        let got = store.batch(a).await.unwrap().unwrap();
        assert_eq!(got.status, INITIALIZED);
        assert_eq!(got.request, None);
        assert_eq!(
            got.items,
            json!([{"sku": "A", "warehouse": "W", "quantity": 1}])
        );
        // Claims: one owner gets each batch once while the lease holds.
        let c1 = store.claim("one", now, 1000, 1).await.unwrap();
        assert_eq!(c1.len(), 1);
        assert_eq!(c1[0].id, a);
        assert_eq!(c1[0].status, COMMIT, "claiming commits a batch to delivery");
        let c2 = store.claim("two", now, 1000, 10).await.unwrap();
        assert_eq!(c2.iter().map(|b| b.id).collect::<Vec<_>>(), vec![b]);
        assert!(
            store
                .claim("three", now + 500, 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Saving needs the lease; a lost lease is reported, not overwritten.
        let mut x = c1[0].clone();
        x.status = COMMIT.into();
        x.request = Some(json!({"k": 1}));
        x.modified_at = now + 1;
        assert!(store.save("one", &x, false).await.unwrap());
        assert!(!store.save("two", &x, true).await.unwrap());
        // An expired lease is claimed again by another owner.
        let again = store.claim("three", now + 1001, 1000, 10).await.unwrap();
        assert_eq!(again.iter().map(|b| b.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(again[0].status, COMMIT);
        assert_eq!(again[0].request, Some(json!({"k": 1})));
        assert!(
            !store.save("one", &x, true).await.unwrap(),
            "the old holder lost it"
        );
        // Not due yet: not claimed.
        let mut later = again[0].clone();
        later.next_at = now + 60_000;
        later.attempts = 1;
        later.last_error = Some("down".into());
        assert!(store.save("three", &later, true).await.unwrap());
        let mut fin = again[1].clone();
        fin.status = DONE.into();
        fin.results = Some(json!([{"sku": "A", "status": "SUCCESS"}]));
        fin.done_at = Some(now + 2000);
        assert!(store.save("three", &fin, true).await.unwrap());
        assert!(
            store
                .claim("four", now + 3000, 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .claim("four#1", now + 60_000, 1000, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store.release_all("fou").await.unwrap(),
            0,
            "only its own tokens"
        );
        assert_eq!(store.release_all("four").await.unwrap(), 1);
        assert_eq!(
            store
                .claim("five", now + 60_000, 1000, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        // Listing and counting.
        let done = store.batches(Some(DONE), 10).await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            done[0].results,
            Some(json!([{"sku": "A", "status": "SUCCESS"}]))
        );
        assert_eq!(
            store.batches(None, 10).await.unwrap()[0].id,
            b,
            "newest first"
        );
        let counts = store.counts().await.unwrap();
        assert!(
            counts.contains(&(DONE.to_string(), 1)) && counts.contains(&(COMMIT.to_string(), 1)),
            "{counts:?}"
        );
        // Reports.
        let r = Report {
            batch_id: Some(a),
            action_content_type: "stock_batch".into(),
            action_object_id: a.to_string(),
            raw_request: "{}".into(),
            raw_response: "{}".into(),
            error_code: "unknown_sku".into(),
            error_description: "unknown SKU 'A'".into(),
            is_ok: false,
            target_content_type: "product_stock".into(),
            target_object_id: "A".into(),
            modified_date: now,
            ..Report::default()
        };
        let rid = store.add_report(&r).await.unwrap();
        let reports = store.reports(Some(a), 10).await.unwrap();
        assert_eq!(
            reports,
            vec![Report {
                id: rid,
                ..r.clone()
            }]
        );
        assert!(store.reports(Some(b), 10).await.unwrap().is_empty());
        // Signatures: refused while unexpired, accepted again after.
        assert!(store.first_use("s1", 1, now + 100, now).await.unwrap());
        assert!(!store.first_use("s1", 1, now + 100, now + 50).await.unwrap());
        assert!(store.first_use("s1", 2, now + 100, now + 50).await.unwrap());
        assert!(
            store
                .first_use("s1", 1, now + 300, now + 101)
                .await
                .unwrap()
        );
    }

    #[test]
    fn urls_in_messages_carry_no_password() {
        assert_eq!(
            without_password("postgres://sb:p@ss#1@db/sb"),
            "postgres://***@db/sb"
        );
        assert_eq!(without_password("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
    }

    #[tokio::test]
    async fn sqlite_passes_the_store_suite() {
        let dir = std::env::temp_dir().join(format!("soapbridge-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("suite.db");
        let _ = std::fs::remove_file(&path);
        let store = Store::open(&format!("sqlite:{}", path.display()), "")
            .await
            .unwrap();
        suite(&store).await;
        drop(store);
        // Reopening migrates nothing twice and keeps the data.
        let store = Store::open(&format!("sqlite:{}", path.display()), "")
            .await
            .unwrap();
        assert_eq!(store.batches(None, 10).await.unwrap().len(), 2);
    }

    /// The same suite on PostgreSQL, in a throwaway schema: `SOAPBRIDGE_TEST_PG`, or the local
    /// server (required: `.ci/run` starts it).
    #[tokio::test]
    async fn postgres_passes_the_store_suite() {
        let url = test_pg_url();
        let schema = format!("sb_suite_{}", std::process::id());
        let store = Store::open(&url, &schema).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is required (start it, or set SOAPBRIDGE_TEST_PG): {e}")
        });
        suite(&store).await;
        if let Store::Postgres(p) = &store {
            p.drop_schema().await.unwrap();
        }
    }

    fn test_pg_url() -> String {
        std::env::var("SOAPBRIDGE_TEST_PG")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
    }
}
