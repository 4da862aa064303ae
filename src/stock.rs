//! Stock sync: stock lists sent to a sales channel synchronously, or accepted as durable
//! batches and delivered by workers, whatever happens to the backend or to the bridge.
//!
//! A batch goes `initialized` (accepted and stored) -> `commit` (its backend request rendered
//! and committed) -> `sent_to_remote` (the backend took it) -> `ongoing` (still processing) ->
//! `done` (per-item results stored) or `fail` (refused, or out of attempts). Workers claim due
//! batches with a lease; a failed delivery is retried with exponential back-off and jitter up to
//! `max_attempts`; a worker that dies leaves a lease that expires, and the batch is claimed again.
//! Every delivery of a batch carries the batch's idempotency key, so a delivery repeated after
//! a crash is applied once by the backend. Every failure (and every success when the caller asks
//! for success logs) leaves an error report with the raw request and response, secrets redacted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};

use crate::call::Val;
use crate::config::{StockAction, StockList, StockOp, StockPlan};
use crate::error::{Error, Party};
use crate::protocol::xml::ReadError;
use crate::route::Route;
use crate::store::{self, Batch, BatchStatus, NewBatch, Report, Store};

#[derive(Debug)]
pub(crate) struct StockSync {
    pub store: Arc<Store>,
    send: Route,
    poll: Route,
    /// Workers, attempts, lease, polling and back-off, as configured.
    plan: StockPlan,
    /// This instance's name on the leases it holds.
    owner: String,
    wake: Notify,
    seq: AtomicU64,
    clock: crate::clock::Clock,
}

/// What a stock-service operation does, for `check`.
pub(crate) fn describe_op(op: &StockOp) -> String {
    match op {
        StockOp::Submit { action, list } => format!(
            "stock sync: {} into the {} list (sync, or an async batch)",
            action.as_str(),
            list.as_str()
        ),
        StockOp::Warehouses => "stock sync: the configured warehouse codes".into(),
        StockOp::Batches => "stock sync: batches from the store".into(),
        StockOp::Batch => "stock sync: one batch from the store".into(),
        StockOp::Reports => "stock sync: error reports from the store".into(),
    }
}

/// Raw requests and responses kept in a report at most (bytes).
const REPORT_TEXT_MAX: usize = 64 * 1024;

/// Report text cut to [`REPORT_TEXT_MAX`] (on a character boundary), saying so.
fn capped(mut s: String) -> String {
    if s.len() > REPORT_TEXT_MAX {
        let total = s.len();
        let mut cut = REPORT_TEXT_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(&format!("... (cut: {total} bytes in all)"));
    }
    s
}

/// The final status a channel's answer gives, if any: done-like or fail-like words; anything
/// else means still processing.
fn outcome_of(answer: &Value) -> Option<BatchStatus> {
    match answer
        .get("status")
        .and_then(Value::as_str)?
        .to_ascii_lowercase()
        .as_str()
    {
        "done" | "completed" | "complete" | "success" | "succeeded" | "finished" => {
            Some(BatchStatus::Done)
        }
        "fail" | "failed" | "failure" | "error" | "cancelled" | "canceled" | "rejected" => {
            Some(BatchStatus::Fail)
        }
        _ => None,
    }
}

impl StockSync {
    /// The stock sync a plan describes, delivering through `backend` and keeping its batches
    /// in `store`.
    pub(crate) fn new(
        plan: &StockPlan,
        store: Arc<Store>,
        backend: Arc<crate::backend::Backend>,
        clock: crate::clock::Clock,
    ) -> StockSync {
        let send = Route::new(plan.send.clone(), backend.clone());
        let poll = Route::new(plan.poll.clone(), backend);
        // Letters, digits and '-' only: claim tokens are "<owner>#<n>", and the instance's
        // claims are found again by that prefix.
        let host: String = std::env::var("HOSTNAME")
            .unwrap_or_else(|_| "host".into())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let owner = format!("{host}-{}-{:x}", std::process::id(), clock.now_ms());
        StockSync {
            store,
            send,
            poll,
            plan: plan.clone(),
            owner,
            wake: Notify::new(),
            seq: AtomicU64::new(0),
            clock,
        }
    }

    pub(crate) fn describe(&self) -> Vec<String> {
        vec![format!(
            "stock sync: {} workers, store {}, send -> {}, poll -> {}",
            self.plan.workers,
            self.store.kind(),
            self.send.describe(),
            self.poll.describe()
        )]
    }

    /// One stock-service operation; `input` is what the operation's body template rendered.
    pub(crate) async fn handle(&self, op: &StockOp, input: &Value) -> Result<Value, Error> {
        match op {
            StockOp::Submit { action, list } => self.submit(*action, *list, input).await,
            StockOp::Warehouses => Ok(json!({
                "warehouses": self.plan.warehouses.iter().enumerate().map(|(i, c)| json!({"code": c, "index": i + 1})).collect::<Vec<_>>()
            })),
            StockOp::Batches => {
                let status = match input
                    .get("status")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    None => None,
                    Some(s) => Some(BatchStatus::parse(s).ok_or_else(|| {
                        let all: Vec<&str> = BatchStatus::ALL.iter().map(|s| s.as_str()).collect();
                        ReadError::InvalidValue {
                            path: "status".into(),
                            value: s.chars().take(40).collect(),
                            expected: format!("one of {}", all.join(", ")),
                        }
                    })?),
                };
                let limit = limit_of(input)?;
                let batches = self.store.batches(status, limit).await.map_err(store_err)?;
                Ok(
                    json!({"batches": batches.iter().map(|b| batch_json(b, false)).collect::<Vec<_>>()}),
                )
            }
            StockOp::Batch => {
                let id = input
                    .get("batch_id")
                    .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                    .ok_or_else(|| ReadError::MissingElement {
                        path: "batchId".into(),
                    })?;
                match self.store.batch(id).await.map_err(store_err)? {
                    Some(b) => Ok(json!({"batch": batch_json(&b, true)})),
                    None => Err(ReadError::InvalidValue {
                        path: "batchId".into(),
                        value: id.to_string(),
                        expected: "the id of a recorded batch".into(),
                    }
                    .into()),
                }
            }
            StockOp::Reports => {
                let batch = input
                    .get("batch_id")
                    .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
                let reports = self
                    .store
                    .reports(batch, limit_of(input)?)
                    .await
                    .map_err(store_err)?;
                Ok(json!({"reports": reports.iter().map(report_json).collect::<Vec<_>>()}))
            }
        }
    }

    /// A stock list: sent now and answered with per-item results (`is_sync`), or recorded as a
    /// batch and answered with its id at once.
    async fn submit(
        &self,
        action: StockAction,
        list: StockList,
        input: &Value,
    ) -> Result<Value, Error> {
        let items = match input.get("items") {
            Some(Value::Array(items)) if !items.is_empty() => items.clone(),
            _ => {
                return Err(ReadError::MissingElement {
                    path: "stocks/stock".into(),
                }
                .into());
            }
        };
        let is_sync = input
            .get("is_sync")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let success_log = input
            .get("success_log")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let key = self.new_key();
        if is_sync {
            return self
                .submit_sync(action, list, &key, items, success_log)
                .await;
        }
        let id = self
            .store
            .insert_batch(&NewBatch {
                key,
                action,
                list,
                items: Value::Array(items),
                success_log,
                now: self.clock.now_ms(),
            })
            .await
            .map_err(store_err)?;
        self.wake.notify_one();
        Ok(json!({"batch_id": id, "status": BatchStatus::Initialized.as_str()}))
    }

    async fn submit_sync(
        &self,
        action: StockAction,
        list: StockList,
        key: &str,
        items: Vec<Value>,
        success_log: bool,
    ) -> Result<Value, Error> {
        let request = json!({"mode": "sync", "key": key, "action": action.as_str(), "list": list.as_str(), "items": items});
        let answer = self.send.invoke(&Val::borrowed(&request)).await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.report(
                    None,
                    "stock_list",
                    "sync",
                    &request,
                    &Value::String(e.to_string()),
                    e.code(),
                    &e.to_string(),
                    false,
                    "",
                )
                .await;
                return Err(e);
            }
        };
        let results = answer
            .get("results")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        self.report_items(
            None,
            "stock_list",
            "sync",
            &request["items"],
            &results,
            success_log,
        )
        .await;
        Ok(json!({"status": BatchStatus::Done.as_str(), "results": results}))
    }

    fn new_key(&self) -> String {
        format!(
            "sb-{}-{}",
            self.owner,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Runs the delivery workers until `shutdown` turns true, then lets each finish the step it
    /// is in and ends this instance's leases.
    pub(crate) async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.plan.workers.max(1) {
            let me = self.clone();
            let rx = shutdown.clone();
            tasks.spawn(async move { me.worker(rx).await });
        }
        while tasks.join_next().await.is_some() {}
        match self.store.release_all(&self.owner).await {
            Ok(n) if n > 0 => {
                tracing::info!(released = n, "stock sync stopped; released its claims")
            }
            Ok(_) => tracing::info!("stock sync stopped"),
            Err(e) => tracing::warn!(error = %e, "stock sync stopped; its claims will expire"),
        }
    }

    async fn worker(&self, mut shutdown: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.plan.poll_interval_ms.clamp(10, 500) as u64);
        loop {
            if *shutdown.borrow() {
                return;
            }
            // One batch per claim, under a token of its own: a save by anyone but this claim's
            // holder is refused, even by another worker of this instance.
            let token = format!(
                "{}#{}",
                self.owner,
                self.seq.fetch_add(1, Ordering::Relaxed)
            );
            match self
                .store
                .claim(&token, self.clock.now_ms(), self.plan.lease_ms, 1)
                .await
            {
                Ok(batches) if !batches.is_empty() => {
                    for b in batches {
                        self.process(b, &token).await;
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(idle) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stock sync cannot claim batches; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Takes one claimed batch one step: at most one delivery or one poll (each within the
    /// backend's timeout; the lease is checked at start-up to outlast three of them, a renewed
    /// login included), then saves it and ends the claim.
    async fn process(&self, mut b: Batch, token: &str) {
        let now = self.clock.now_ms();
        b.modified_at = now;
        if b.request.is_none() {
            b.request = Some(self.request_of(&b));
        }
        match b.status {
            // A claim turns `initialized` into `commit`; both are delivered.
            BatchStatus::Initialized | BatchStatus::Commit => {
                b.status = BatchStatus::Commit;
                let request = b.request.clone().unwrap_or(Value::Null);
                let answer = match self.send.invoke(&Val::borrowed(&request)).await {
                    Ok(a) => a,
                    Err(e) => return self.retry_or_fail(b, e, token).await,
                };
                let Some(remote) = answer.get("remote_id").and_then(text) else {
                    let e = Error::BackendBadResponse {
                        backend: self.send.backend.name.clone(),
                        reason: "the delivery's answer has no batch id to ask about".into(),
                    };
                    return self.retry_or_fail(b, e, token).await;
                };
                b.remote_id = Some(remote);
                b.sent_at = Some(now);
                // Delivered: the attempts counted so far were delivery attempts.
                b.attempts = 0;
                b.last_error = None;
                match outcome_of(&answer) {
                    Some(status) => self.finish(b, &answer, status, token).await,
                    None => {
                        b.status = BatchStatus::SentToRemote;
                        b.next_at = now + self.plan.poll_interval_ms;
                        self.save(&b, token, true).await;
                    }
                }
            }
            BatchStatus::SentToRemote | BatchStatus::Ongoing => {
                let ask = json!({"remote_id": b.remote_id});
                match self.poll.invoke(&Val::borrowed(&ask)).await {
                    Ok(answer) => match outcome_of(&answer) {
                        Some(status) => self.finish(b, &answer, status, token).await,
                        None => {
                            b.status = BatchStatus::Ongoing;
                            b.next_at = now + self.plan.poll_interval_ms;
                            b.last_error = None;
                            self.save(&b, token, true).await;
                        }
                    },
                    // The channel does not know the batch: deliver it again (same key), a
                    // limited number of times.
                    Err(Error::BackendRefused(r)) if r.status == 404 => {
                        let e = Error::BackendRefused(r);
                        b.status = BatchStatus::Commit;
                        b.remote_id = None;
                        b.sent_at = None;
                        self.retry_or_fail(b, e, token).await
                    }
                    // The channel has the batch: a failing poll never fails it; it is asked
                    // again, at most every retry_max_ms, until it answers.
                    Err(e) => {
                        b.attempts += 1;
                        b.last_error = Some(e.to_string());
                        b.next_at = now + self.backoff(b.attempts);
                        tracing::info!(
                            batch = b.id,
                            code = e.code(),
                            "stock poll failed; will ask again"
                        );
                        self.save(&b, token, true).await;
                    }
                }
            }
            _ => {
                self.save(&b, token, true).await;
            }
        }
    }

    /// The request a batch's deliveries send (the same every time: same key, same items).
    fn request_of(&self, b: &Batch) -> Value {
        json!({"mode": "async", "key": b.key, "action": b.action.as_str(), "list": b.list.as_str(), "items": b.items})
    }

    async fn save(&self, b: &Batch, token: &str, release: bool) -> bool {
        match self.store.save(token, b, release).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    batch = b.id,
                    "lost the claim on a batch (its lease expired); another worker has it"
                );
                false
            }
            Err(e) => {
                tracing::warn!(batch = b.id, error = %e, "cannot save a batch; its claim will expire and it will be taken up again");
                false
            }
        }
    }

    /// The channel's final answer: per-item results stored, a report per failed item (and per
    /// successful one with success logs).
    async fn finish(&self, mut b: Batch, answer: &Value, status: BatchStatus, token: &str) {
        let results = answer
            .get("results")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        b.status = status;
        b.done_at = Some(self.clock.now_ms());
        b.results = Some(results.clone());
        b.last_error = None;
        // Reports first, then the final state: a client that sees the batch finished finds
        // its reports. (Should the claim have been lost meanwhile, the batch's next worker
        // reports again: a report twice rather than none.)
        self.report_items(
            Some(b.id),
            "stock_batch",
            &b.id.to_string(),
            &b.items,
            &results,
            b.success_log,
        )
        .await;
        if self.save(&b, token, true).await {
            tracing::info!(batch = b.id, status = %b.status, "stock batch finished");
        }
    }

    /// A failed delivery: a refusal of the caller's data ends the batch; anything else is
    /// retried after a back-off, until the attempts run out.
    async fn retry_or_fail(&self, mut b: Batch, e: Error, token: &str) {
        let now = self.clock.now_ms();
        if let Error::BackendCircuitOpen { retry_after_s, .. } = &e {
            // Not sent: no attempt is used; the batch waits for the breaker.
            b.next_at = now + *retry_after_s as i64 * 1000;
            b.last_error = Some(e.to_string());
            self.save(&b, token, true).await;
            return;
        }
        b.attempts += 1;
        b.last_error = Some(e.to_string());
        let refused =
            matches!(&e, Error::BackendRefused(r) if r.status != 404) && e.party() == Party::Caller;
        if refused || b.attempts >= self.plan.max_attempts {
            b.status = BatchStatus::Fail;
            b.done_at = Some(now);
            // The report first, then the final state (see `finish`).
            let request = b.request.clone().unwrap_or(Value::Null);
            let code = e.backend_code().unwrap_or(e.code()).to_string();
            let why = if refused {
                format!("the channel refused the batch: {e}")
            } else {
                format!("gave up after {} attempts: {e}", b.attempts)
            };
            self.report(
                Some(b.id),
                "stock_batch",
                &b.id.to_string(),
                &request,
                &refusal_body(&e),
                &code,
                &why,
                false,
                "",
            )
            .await;
            if self.save(&b, token, true).await {
                tracing::warn!(batch = b.id, code = %code, attempts = b.attempts, "stock batch failed");
            }
            return;
        }
        b.next_at = now + self.backoff(b.attempts);
        tracing::info!(
            batch = b.id,
            attempt = b.attempts,
            code = e.code(),
            retry_in_ms = b.next_at - now,
            "stock delivery failed; will retry"
        );
        self.save(&b, token, true).await;
    }

    /// base * 2^(attempt-1), capped, with "equal jitter": half fixed, half random.
    fn backoff(&self, attempt: i64) -> i64 {
        let s = &self.plan;
        let exp = s
            .retry_base_ms
            .saturating_mul(1i64 << (attempt - 1).clamp(0, 30));
        let d = exp.min(s.retry_max_ms).max(1);
        let r = self.random() % (d as u64 / 2 + 1);
        d / 2 + r as i64
    }

    fn random(&self) -> u64 {
        // splitmix64 over a counter and the clock: jitter, not cryptography.
        let mut z = (self.clock.now_ms() as u64).wrapping_add(
            self.seq
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A report per failed item (and per successful one with success logs), each with the
    /// item as sent and the channel's result for it (not the whole list, which would make
    /// reports grow with the square of a list's size).
    async fn report_items(
        &self,
        batch: Option<i64>,
        kind: &str,
        object: &str,
        items: &Value,
        results: &Value,
        success_log: bool,
    ) {
        let sent = items.as_array().map(Vec::as_slice).unwrap_or(&[]);
        let results = results.as_array().map(Vec::as_slice).unwrap_or(&[]);
        for (i, result) in results.iter().enumerate() {
            let ok = result.get("status").and_then(Value::as_str) == Some("SUCCESS");
            if ok && !success_log {
                continue;
            }
            let sku = result.get("sku").and_then(text).unwrap_or_default();
            let message = result.get("message").and_then(text).unwrap_or_default();
            // The item sent at the same position (the channel answers in order), when it is
            // the same SKU.
            let item = sent
                .get(i)
                .filter(|it| it.get("sku").and_then(text).as_deref() == Some(sku.as_str()))
                .cloned()
                .unwrap_or(Value::Null);
            self.report(
                batch,
                kind,
                object,
                &item,
                result,
                if ok { "ok" } else { "item_failed" },
                &message,
                ok,
                &sku,
            )
            .await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn report(
        &self,
        batch: Option<i64>,
        kind: &str,
        object: &str,
        request: &Value,
        response: &Value,
        code: &str,
        description: &str,
        ok: bool,
        target: &str,
    ) {
        let r = Report {
            batch_id: batch,
            action_content_type: kind.into(),
            action_object_id: object.into(),
            raw_request: capped(crate::redact::text(request)),
            raw_response: capped(crate::redact::text(response)),
            error_code: code.into(),
            error_description: description.into(),
            is_ok: ok,
            target_content_type: if target.is_empty() {
                ""
            } else {
                "product_stock"
            }
            .into(),
            target_object_id: target.into(),
            modified_date: self.clock.now_ms(),
            ..Report::default()
        };
        if let Err(e) = self.store.add_report(&r).await {
            tracing::warn!(error = %e, "cannot record an error report");
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A list's `limit`: none or 0 is 100, more than 1000 is 1000; a negative one is refused.
fn limit_of(input: &Value) -> Result<i64, ReadError> {
    let refused = |v: &Value| ReadError::InvalidValue {
        path: "limit".into(),
        value: match v {
            Value::String(s) => s.chars().take(40).collect(),
            other => other.to_string().chars().take(40).collect(),
        },
        expected: "a number of entries from 1 to 1000 (none or 0: 100)".into(),
    };
    // Absent, null or empty (as an empty `status` is): the default.
    let Some(v) = input
        .get("limit")
        .filter(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()))
    else {
        return Ok(100);
    };
    match v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()) {
        Some(l) if l < 0 => Err(refused(v)),
        Some(l) if l > 0 => Ok(l.min(1000)),
        Some(_) => Ok(100),
        None => Err(refused(v)),
    }
}

fn store_err(e: store::StoreError) -> Error {
    Error::Store(e)
}

/// What a failed call's report keeps of the answer.
fn refusal_body(e: &Error) -> Value {
    match e {
        Error::BackendRefused(r) if !r.body.is_null() => r.body.clone(),
        other => Value::String(other.to_string()),
    }
}

fn ms_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A batch as the stock service answers it.
fn batch_json(b: &Batch, with_results: bool) -> Value {
    let mut m = Map::new();
    m.insert("batch_id".into(), b.id.into());
    m.insert("action".into(), b.action.as_str().into());
    m.insert("list".into(), b.list.as_str().into());
    m.insert("status".into(), b.status.as_str().into());
    m.insert(
        "item_count".into(),
        b.items.as_array().map_or(0, Vec::len).into(),
    );
    m.insert("attempts".into(), b.attempts.into());
    m.insert("created".into(), ms_text(b.created_at).into());
    m.insert("modified".into(), ms_text(b.modified_at).into());
    if let Some(r) = &b.remote_id {
        m.insert("remote_id".into(), r.clone().into());
    }
    if let Some(e) = &b.last_error {
        m.insert("last_error".into(), e.clone().into());
    }
    if with_results {
        m.insert(
            "results".into(),
            b.results.clone().unwrap_or(Value::Array(Vec::new())),
        );
    }
    Value::Object(m)
}

fn report_json(r: &Report) -> Value {
    json!({
        "id": r.id,
        "batch_id": r.batch_id,
        "action_content_type": r.action_content_type,
        "action_object_id": r.action_object_id,
        "raw_request": r.raw_request,
        "raw_response": r.raw_response,
        "error_code": r.error_code,
        "error_description": r.error_description,
        "is_ok": r.is_ok,
        "target_content_type": r.target_content_type,
        "target_object_id": r.target_object_id,
        "modified_date": ms_text(r.modified_date),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_capped_and_channel_words_end_batches() {
        let long = capped("ş".repeat(REPORT_TEXT_MAX));
        assert!(long.len() < REPORT_TEXT_MAX + 64 && long.ends_with("bytes in all)"));
        assert_eq!(
            outcome_of(&json!({"status": "COMPLETED"})),
            Some(BatchStatus::Done)
        );
        assert_eq!(
            outcome_of(&json!({"status": "cancelled"})),
            Some(BatchStatus::Fail)
        );
        assert_eq!(outcome_of(&json!({"status": "ongoing"})), None);
    }
}
