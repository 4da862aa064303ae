//! An operation's backend call, compiled from its `[mappings.<set>.<operation>]`: the request
//! templates (method, path, query, body), the response template, and optionally following
//! `next` links through every page (`pages`) or sending a list body in chunks with per-item
//! outcomes (`batch`).

use std::sync::Arc;

use http::Method;
use serde_json::{Map, Value, json};

use crate::backend::{Backend, BackendRequest, Body, Creds};
use crate::call::Val;
use crate::config::{BatchConfig, OperationMapping, PagesConfig};
use crate::error::{Error, FieldError, Refusal};
use crate::mapping::{Doc, PathExpr, PathTemplate, Root, Scope, Template, render_query};
use crate::stock::{StockOp, StockSync};

/// The backend call an operation maps to.
#[derive(Debug)]
pub struct Route {
    pub backend: Arc<Backend>,
    method: Method,
    path: PathTemplate,
    query: Vec<(String, Template)>,
    headers: Vec<(http::HeaderName, Template)>,
    /// Handled by the stock sync: the body template renders its input.
    stock: Option<(Arc<StockSync>, StockOp)>,
    body: Option<Template>,
    response: Template,
    pages: Option<Pages>,
    batch: Option<Batch>,
}

#[derive(Debug)]
struct Pages {
    next: PathExpr,
    items: PathExpr,
    max: usize,
}

#[derive(Debug)]
struct Batch {
    size: usize,
    items: PathExpr,
    item_errors: Option<PathExpr>,
    resend_valid: bool,
}

/// A compile error: the key under the operation's mapping, and the reason.
pub type CompileError = (String, String);

fn path(key: &str, text: &str) -> Result<PathExpr, CompileError> {
    let p = PathExpr::parse(text).map_err(|e| (key.to_string(), e))?;
    if p.root() != Root::Doc {
        return Err((key.to_string(), format!("'{text}' must be a path from $")));
    }
    Ok(p)
}

impl Route {
    pub fn compile(
        m: &OperationMapping,
        backend: Arc<Backend>,
        stock: Option<&Arc<StockSync>>,
    ) -> Result<Route, CompileError> {
        let tmpl = |k: &str, v: &Value| Template::compile(v).map_err(|e| (k.to_string(), e));
        let mut query = Vec::new();
        for (q, v) in &m.query {
            query.push((q.clone(), tmpl(&format!("query.{q}"), v)?));
        }
        let mut headers = Vec::new();
        for (h, v) in &m.headers {
            let name = http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                (
                    format!("headers.{h}"),
                    "not a valid header name".to_string(),
                )
            })?;
            headers.push((name, tmpl(&format!("headers.{h}"), v)?));
        }
        let stock = match &m.stock {
            None => None,
            Some(s) => {
                let sync = stock.ok_or_else(|| {
                    (
                        "stock".to_string(),
                        "needs a [stock] section (and a [store])".to_string(),
                    )
                })?;
                let op = StockOp::parse(&s.op, s.action.as_deref(), s.list.as_deref())
                    .map_err(|e| ("stock".to_string(), e))?;
                Some((sync.clone(), op))
            }
        };
        if stock.is_none() && m.path.is_none() {
            return Err(("path".into(), "is required".into()));
        }
        let body = m.body.as_ref().map(|b| tmpl("body", b)).transpose()?;
        let response = tmpl("response", &m.response)?;
        let pages = m
            .pages
            .as_ref()
            .map(|p: &PagesConfig| {
                Ok::<_, CompileError>(Pages {
                    next: path("pages.next", &p.next)?,
                    items: path("pages.items", &p.items)?,
                    max: p.max_pages.max(1),
                })
            })
            .transpose()?;
        let batch = m
            .batch
            .as_ref()
            .map(|b: &BatchConfig| {
                if b.size == 0 {
                    return Err(("batch.size".to_string(), "must be at least 1".to_string()));
                }
                if body.is_none() {
                    return Err(("batch".to_string(), "needs a body to split".to_string()));
                }
                Ok(Batch {
                    size: b.size,
                    items: path("batch.items", &b.items)?,
                    item_errors: b
                        .item_errors
                        .as_ref()
                        .map(|e| path("batch.item_errors", e))
                        .transpose()?,
                    resend_valid: b.resend_valid,
                })
            })
            .transpose()?;
        if pages.is_some() && batch.is_some() {
            return Err(("pages".into(), "cannot be combined with batch".into()));
        }
        if !backend.has_session() {
            let uses = |t: &Template| t.uses(Root::Session);
            if body.as_ref().is_some_and(uses) || query.iter().any(|(_, t)| uses(t)) {
                return Err((
                    "body".into(),
                    format!(
                        "uses $session, but backend '{}' has no session login ([backends.{}.auth] kind = \"session\")",
                        backend.name, backend.name
                    ),
                ));
            }
        }
        if batch.is_none() && response.uses(Root::Batch) {
            return Err((
                "response".into(),
                "uses $batch, but the mapping has no batch".into(),
            ));
        }
        Ok(Route {
            backend,
            method: m
                .method
                .parse()
                .map_err(|_| ("method".to_string(), "not an HTTP method".to_string()))?,
            path: PathTemplate::parse(m.path.as_deref().unwrap_or("/"))
                .map_err(|e| ("path".to_string(), e))?,
            query,
            headers,
            stock,
            body,
            response,
            pages,
            batch,
        })
    }

    pub fn describe(&self) -> String {
        if let Some((_, op)) = &self.stock {
            return match op {
                StockOp::Submit { action, list } => {
                    format!("stock sync: {action} into the {list} list (sync, or an async batch)")
                }
                StockOp::Warehouses => "stock sync: the configured warehouse codes".into(),
                StockOp::Batches => "stock sync: batches from the store".into(),
                StockOp::Batch => "stock sync: one batch from the store".into(),
                StockOp::Reports => "stock sync: error reports from the store".into(),
            };
        }
        let mut s = format!(
            "{} {}{}",
            self.method,
            self.backend.base_url(),
            self.path.text()
        );
        if self.pages.is_some() {
            s.push_str(" (every page)");
        }
        if let Some(b) = &self.batch {
            s.push_str(&format!(" (in batches of {})", b.size));
        }
        s
    }

    fn scope<'a>(&'a self, input: &'a Val<'a>, creds: &'a Creds) -> Scope<'a> {
        let mut s = Scope::new(Doc::Call(input), Doc::Call(input));
        s.vars = Some(&self.backend.vars);
        s.session = creds.session.as_deref();
        s
    }

    /// The request for the call's parameters and the backend's current credentials.
    fn render(&self, input: &Val<'_>, creds: &Creds) -> Result<BackendRequest, Error> {
        let scope = self.scope(input, creds);
        let mut path_and_query =
            self.path
                .render(&scope)
                .map_err(|expr| Error::MissingElement {
                    path: expr.trim_start_matches("$.").replace('.', "/"),
                })?;
        path_and_query.push_str(&render_query(&self.query, &scope).map_err(Error::Internal)?);
        let body = match self.body.as_ref().and_then(|t| t.eval(&scope)) {
            Some(v) => Body::Json(v),
            None => Body::None,
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, t) in &self.headers {
            if let Some(v) = t.eval(&scope).filter(|v| !v.is_null()) {
                let text = crate::mapping::scalar_text(&v);
                let value = http::HeaderValue::from_str(&text).map_err(|_| {
                    Error::Internal(format!("header {name}: not a valid header value"))
                })?;
                headers.push((name.clone(), value));
            }
        }
        Ok(BackendRequest {
            method: self.method.clone(),
            path_and_query,
            body,
            headers,
        })
    }

    /// Renders the backend request from the call's parameters, calls the backend (every page,
    /// or every batch) and shapes its answer into the operation's result.
    pub async fn invoke(&self, input: &Val<'_>) -> Result<Value, Error> {
        if let Some((sync, op)) = &self.stock {
            let creds = Creds::default();
            let scope = self.scope(input, &creds);
            let rendered = self
                .body
                .as_ref()
                .and_then(|t| t.eval(&scope))
                .unwrap_or(Value::Null);
            // Boxed: a stock operation calls routes itself (its send route).
            let answer = Box::pin(sync.handle(op, &rendered)).await?;
            let mut scope = Scope::new(Doc::Json(&answer), Doc::Call(input));
            scope.vars = Some(&self.backend.vars);
            return self.response.eval(&scope).ok_or_else(|| {
                Error::Internal("the stock operation's response mapping found nothing".into())
            });
        }
        let (answer, batch) = match &self.batch {
            Some(b) => {
                let (a, outcomes) = self.send_batches(b, input).await?;
                (a, Some(outcomes))
            }
            None => {
                let first = self.backend.send(|c| self.render(input, c)).await?;
                match &self.pages {
                    Some(p) => (self.gather_pages(p, input, first).await?, None),
                    None => (first, None),
                }
            }
        };
        let mut scope = Scope::new(Doc::Json(&answer), Doc::Call(input));
        scope.vars = Some(&self.backend.vars);
        scope.batch = batch.as_ref();
        self.response
            .eval(&scope)
            .ok_or_else(|| Error::BackendBadResponse {
                backend: self.backend.name.clone(),
                reason: "the answer lacks the fields the response mapping reads".into(),
            })
    }

    /// Follows `next` links from the first page, gathering every page's items into it.
    async fn gather_pages(
        &self,
        p: &Pages,
        input: &Val<'_>,
        mut first: Value,
    ) -> Result<Value, Error> {
        let bad = |reason: String| Error::BackendBadResponse {
            backend: self.backend.name.clone(),
            reason,
        };
        let items_of = |page: &Value| match p.items.eval(&Scope::json(page)) {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(bad(format!("a page has no list at {}", p.items.text()))),
        };
        let mut all = items_of(&first)?;
        let mut next = p.next.eval(&Scope::json(&first));
        let mut pages = 1;
        while let Some(Value::String(link)) = next.take().filter(|v| !v.is_null()) {
            if pages >= p.max {
                return Err(bad(format!("more than {} pages (pages.max_pages)", p.max)));
            }
            let rel = self.backend.relative(&link).ok_or_else(|| {
                bad("a next link points outside the backend; it is not followed".into())
            })?;
            let page = self
                .backend
                .send(|c| {
                    // The route's own headers go with every page.
                    let headers = self.render(input, c)?.headers;
                    Ok(BackendRequest {
                        method: Method::GET,
                        path_and_query: rel.clone(),
                        body: Body::None,
                        headers,
                    })
                })
                .await?;
            all.extend(items_of(&page)?);
            next = p.next.eval(&Scope::json(&page));
            pages += 1;
        }
        p.items.set(&mut first, Value::Array(all));
        Ok(first)
    }

    /// The request for one chunk: the body rendered once per login (`skeleton`: the list
    /// emptied), with only the items at `indices` put in its list.
    fn render_chunk(
        &self,
        b: &Batch,
        input: &Val<'_>,
        creds: &Creds,
        items: &[Value],
        skeleton: &std::sync::Mutex<Option<(u64, BackendRequest)>>,
        indices: &[usize],
    ) -> Result<BackendRequest, Error> {
        let mut cached = skeleton.lock().unwrap_or_else(|p| p.into_inner());
        if cached
            .as_ref()
            .is_none_or(|(g, _)| *g != creds.generation())
        {
            let mut req = self.render(input, creds)?;
            if let Body::Json(body) = &mut req.body
                && !b.items.set(body, Value::Array(Vec::new()))
            {
                return Err(Error::Internal("the batch body has no list".into()));
            }
            *cached = Some((creds.generation(), req));
        }
        let mut req = cached.as_ref().expect("just set").1.clone();
        if let Body::Json(body) = &mut req.body {
            let chunk: Vec<Value> = indices
                .iter()
                .filter_map(|i| items.get(*i).cloned())
                .collect();
            b.items.set(body, Value::Array(chunk));
        }
        Ok(req)
    }

    /// Sends the body's list in chunks. Returns the answers merged (numeric members summed)
    /// and `$batch`: `{items: [{index, status, item, errors, message}], ok, failed, unknown,
    /// not_sent, calls}`. A failure other than a refusal before anything was applied is the
    /// call's error; after that, the chunk that failed in flight is `unknown` (the backend may
    /// or may not have stored it) and the chunks after it are `not_sent`.
    async fn send_batches(&self, b: &Batch, input: &Val<'_>) -> Result<(Value, Value), Error> {
        let items = match self.render(input, &Creds::default())?.body {
            Body::Json(body) => match b.items.eval(&Scope::json(&body)) {
                Some(Value::Array(items)) => items,
                Some(single) => vec![single],
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        let skeleton = std::sync::Mutex::new(None);
        let chunk_of = |c: &Creds, indices: &[usize]| {
            self.render_chunk(b, input, c, &items, &skeleton, indices)
        };
        let mut outcomes: Vec<Option<Value>> = vec![None; items.len()];
        let mut merged = Map::new();
        let mut calls = 0usize;
        let mut applied = false;
        let indices: Vec<usize> = (0..items.len()).collect();
        let mut chunks = indices.chunks(b.size);
        while let Some(chunk) = chunks.next() {
            calls += 1;
            let sent = self.backend.send(|c| chunk_of(c, chunk)).await;
            match sent {
                Ok(answer) => {
                    applied = true;
                    merge(&mut merged, answer);
                    for i in chunk {
                        outcomes[*i] = Some(outcome(*i, &items[*i], "ok", &[], None));
                    }
                }
                Err(Error::BackendRefused(r)) => {
                    let valid = self.record_refusal(b, &r, chunk, &items, &mut outcomes);
                    if b.resend_valid && !valid.is_empty() && valid.len() < chunk.len() {
                        calls += 1;
                        let again = self.backend.send(|c| chunk_of(c, &valid)).await;
                        for i in &valid {
                            outcomes[*i] = Some(match &again {
                                Ok(_) => outcome(*i, &items[*i], "ok", &[], None),
                                Err(Error::BackendRefused(r2)) => {
                                    outcome(*i, &items[*i], "failed", &r2.fields, Some(&r2.message))
                                }
                                Err(e) => {
                                    outcome(*i, &items[*i], "unknown", &[], Some(&e.to_string()))
                                }
                            });
                        }
                        if let Ok(answer) = again {
                            applied = true;
                            merge(&mut merged, answer);
                        }
                    }
                }
                Err(e) if !applied => return Err(e),
                Err(e) => {
                    let message = e.to_string();
                    for i in chunk {
                        outcomes[*i] =
                            Some(outcome(*i, &items[*i], "unknown", &[], Some(&message)));
                    }
                    let later = format!("not sent: an earlier request failed ({message})");
                    for i in chunks.by_ref().flatten() {
                        outcomes[*i] = Some(outcome(*i, &items[*i], "not_sent", &[], Some(&later)));
                    }
                    break;
                }
            }
        }
        let outcomes: Vec<Value> = outcomes.into_iter().flatten().collect();
        let count = |s: &str| outcomes.iter().filter(|o| o["status"] == s).count();
        let batch = json!({
            "ok": count("ok"),
            "failed": count("failed"),
            "unknown": count("unknown"),
            "not_sent": count("not_sent"),
            "calls": calls,
            "items": outcomes,
        });
        Ok((Value::Object(merged), batch))
    }

    /// Marks a refused chunk's items from the refusal's per-item errors (`item_errors`, a
    /// list aligned with the items sent); items without errors are returned, as still valid.
    /// Without an aligned list every item fails with the refusal.
    fn record_refusal(
        &self,
        b: &Batch,
        r: &Refusal,
        chunk: &[usize],
        items: &[Value],
        outcomes: &mut [Option<Value>],
    ) -> Vec<usize> {
        let per_item = b
            .item_errors
            .as_ref()
            .and_then(|p| p.eval(&Scope::json(&r.body)))
            .and_then(|v| match v {
                Value::Array(a) if a.len() == chunk.len() => Some(a),
                _ => None,
            });
        let Some(per_item) = per_item else {
            for i in chunk {
                outcomes[*i] = Some(outcome(
                    *i,
                    &items[*i],
                    "failed",
                    &r.fields,
                    Some(&r.message),
                ));
            }
            return Vec::new();
        };
        let mut valid = Vec::new();
        for (i, errors) in chunk.iter().zip(&per_item) {
            let empty = match errors {
                Value::Null => true,
                Value::Object(m) => m.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            if empty {
                // Not applied: the backend refused the whole request.
                outcomes[*i] = Some(outcome(
                    *i,
                    &items[*i],
                    "not_sent",
                    &[],
                    Some("not applied: another item of its request was refused"),
                ));
                valid.push(*i);
            } else {
                let fields = self.backend.field_errors(errors);
                let message = self
                    .backend
                    .message_of(errors)
                    .unwrap_or_else(|| r.message.clone());
                outcomes[*i] = Some(outcome(*i, &items[*i], "failed", &fields, Some(&message)));
            }
        }
        valid
    }
}

fn outcome(
    index: usize,
    item: &Value,
    status: &str,
    errors: &[FieldError],
    message: Option<&str>,
) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|f| json!({"field": f.field, "code": f.code, "message": f.message}))
        .collect();
    let mut o = json!({"index": index, "status": status, "item": item, "errors": errors});
    if let Some(m) = message {
        o["message"] = Value::from(m);
    }
    o
}

/// Adds a chunk's answer to the merged answer: numbers are summed, other members replaced.
fn merge(into: &mut Map<String, Value>, answer: Value) {
    let Value::Object(m) = answer else { return };
    for (k, v) in m {
        let sum = match (into.get(&k), &v) {
            (Some(Value::Number(a)), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                (Some(a), Some(b)) => Some(Value::from(a.saturating_add(b))),
                _ => None,
            },
            _ => None,
        };
        into.insert(k, sum.unwrap_or(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_answers_sum_numbers() {
        let mut m = Map::new();
        merge(&mut m, json!({"inserted": 2, "updated": 0, "note": "a"}));
        merge(&mut m, json!({"inserted": 3, "updated": 1, "note": "b"}));
        assert_eq!(
            Value::Object(m),
            json!({"inserted": 5, "updated": 1, "note": "b"})
        );
    }
}
