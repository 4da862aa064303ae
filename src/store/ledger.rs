//! The ledger of used signatures, with group commit: concurrent calls queue their signatures,
//! and one writer records every queued signature in one statement (one transaction), then
//! answers each call. A call is answered only once its signature is durable, so a restart (or
//! another instance on PostgreSQL) never accepts a replay; and the cost of a commit is shared by
//! every call waiting for it.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Db, Param, Result, StoreError};

/// Signatures recorded in one statement at most.
const MAX_BATCH: usize = 256;
/// Expired signatures are forgotten after this many batches.
const SWEEP_EVERY: u64 = 64;

struct Ask {
    sign: String,
    time: i64,
    expires_at: i64,
    now: i64,
    answer: oneshot::Sender<Result<bool>>,
}

/// The ledger's side of the store: where calls queue.
#[derive(Debug)]
pub(super) struct Ledger {
    queue: mpsc::Sender<Ask>,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

/// How a database writes a batch: the schema prefix and how parameters are numbered.
#[derive(Debug, Clone)]
pub(super) struct LedgerSql {
    pub(super) schema_prefix: String,
    pub(super) numbered: char,
}

impl LedgerSql {
    /// One statement recording `n` signatures; it returns those recorded (new, or replacing
    /// an expired entry) and not those already there and unexpired.
    fn insert(&self, n: usize) -> String {
        let p = self.numbered;
        let s = &self.schema_prefix;
        let rows: Vec<String> = (0..n)
            .map(|i| format!("({p}{}, {p}{}, {p}{})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        format!(
            "INSERT INTO {s}sb_signatures (sign, time, expires_at) VALUES {}
             ON CONFLICT (sign, time) DO UPDATE SET expires_at = EXCLUDED.expires_at
             WHERE {s}sb_signatures.expires_at < {p}{}
             RETURNING sign, time",
            rows.join(", "),
            3 * n + 1
        )
    }

    fn sweep(&self) -> String {
        format!(
            "DELETE FROM {}sb_signatures WHERE expires_at < {}1",
            self.schema_prefix, self.numbered
        )
    }
}

impl Ledger {
    /// Starts the writer (a task on the current runtime).
    pub(super) fn start(db: Arc<Db>, sql: LedgerSql) -> Ledger {
        let (queue, asks) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write(db, sql, asks));
        Ledger { queue }
    }

    /// Records a signature; `false` when it was already recorded and has not expired.
    pub(super) async fn first_use(
        &self,
        sign: &str,
        time: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let (answer, answered) = oneshot::channel();
        let ask = Ask {
            sign: sign.to_string(),
            time,
            expires_at,
            now,
            answer,
        };
        let gone = || StoreError("the signature ledger's writer stopped".into());
        self.queue.send(ask).await.map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

/// The writer: takes what is queued (at least one), records it in one statement, answers.
async fn write(db: Arc<Db>, sql: LedgerSql, mut asks: mpsc::Receiver<Ask>) {
    let mut batches = 0u64;
    while let Some(first) = asks.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match asks.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        record(&db, &sql, batch).await;
        batches += 1;
        if batches.is_multiple_of(SWEEP_EVERY) {
            let now = chrono::Utc::now().timestamp_millis();
            if let Err(e) = db.execute_ledger(&sql.sweep(), vec![now.into()]).await {
                tracing::warn!(error = %e, "forgetting expired signatures failed");
            }
        }
    }
}

async fn record(db: &Db, sql: &LedgerSql, batch: Vec<Ask>) {
    // A signature twice in one batch: the second is a replay of the first.
    let mut seen = HashSet::new();
    let (first, again): (Vec<Ask>, Vec<Ask>) = batch
        .into_iter()
        .partition(|a| seen.insert((a.sign.clone(), a.time)));
    for a in again {
        let _ = a.answer.send(Ok(false));
    }
    let now = first.iter().map(|a| a.now).max().unwrap_or_default();
    let mut params: Vec<Param> = Vec::with_capacity(3 * first.len() + 1);
    for a in &first {
        params.push(a.sign.as_str().into());
        params.push(a.time.into());
        params.push(a.expires_at.into());
    }
    params.push(now.into());
    let recorded = db
        .query_ledger(&sql.insert(first.len()), params)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| Ok((r.text(0)?, r.int(1)?)))
                .collect::<Result<HashSet<(String, i64)>>>()
        });
    match recorded {
        Ok(set) => {
            for a in first {
                let new = set.contains(&(a.sign.clone(), a.time));
                let _ = a.answer.send(Ok(new));
            }
        }
        Err(e) => {
            for a in first {
                let _ = a.answer.send(Err(StoreError(e.0.clone())));
            }
        }
    }
}
