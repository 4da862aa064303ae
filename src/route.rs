//! An operation's backend call, compiled from its `[mappings.<set>.<operation>]`: the request
//! templates (method, path, query, body), the response template, and optionally following
//! `next` links through every page (`pages`) or sending a list body in chunks with per-item
//! outcomes (`batch`).

use std::sync::Arc;
use std::time::Instant;

use http::Method;
use serde_json::{Map, Value, json};

use crate::backend::{Answer, Backend, BackendRequest, Body, Creds};
use crate::call::{JsonList, Val};
use crate::config::{BatchPlan, PagesPlan, RoutePlan};
use crate::error::{Error, FieldError, Refusal};
use crate::mapping::{Doc, Lazy, MemberRead, Root, Scope, Template, render_query};

/// What the backend answered: one answer as it came, or pages or batches gathered.
enum Fetched {
    One(Answer),
    Gathered(Value, Option<Value>),
}

/// An operation's result, handed to its encoder ([`Route::answer`]), or a large answer handed
/// back to be shaped elsewhere.
pub(crate) enum Shaped<R> {
    Now(R),
    Detached(Detached),
}

/// A backend's large answer with what its shaping reads, owned, so that it can be shaped on
/// another thread, away from the request's borrows ([`Route::answer`]). The call's
/// parameters (`$input` of the response mapping) are kept as JSON.
#[derive(Debug)]
pub(crate) struct Detached {
    route: Route,
    input: Value,
    answer: Answer,
}

impl Detached {
    /// Hands the result to `encode`, as [`Route::answer`] would have.
    pub(crate) fn answer<R>(self, encode: impl FnOnce(Lazy<'_>, usize) -> R) -> Result<R, Error> {
        let Detached {
            route,
            input,
            answer,
        } = self;
        route.shape_one(answer, Doc::Json(&input), |t, scope, size| {
            t.read_with(scope, |tree| encode(tree, size))
        })
    }

    /// The answer's list at the response mapping's member `list`, read one item at a time
    /// ([`JsonList`]), with the values of the members `beside` (`None` where the mapping has
    /// no such member or the answer no such value), handed to `read`: a long list is then held
    /// as the answer's text alone, not also as values read from it. Done when the mapping
    /// takes each of these members as a path of keys into the answer (`rows = "$.items"`) and
    /// [`JsonList::find`] can read them so; `Err(self)` otherwise, to be shaped whole
    /// ([`Detached::answer`]), as then is an answer that is not JSON (which that explains).
    pub(crate) fn read_list<R>(
        self,
        list: &str,
        beside: &[&str],
        read: impl FnOnce(&Rows<'_>, &[Option<Val<'_>>], usize) -> R,
    ) -> Result<R, Detached> {
        let response = &self.route.plan.response;
        let keys = |member: &str| match response.member_read(member) {
            MemberRead::Keys(keys) => Some(Some(keys)),
            MemberRead::Absent => Some(None),
            MemberRead::Built => None,
        };
        let Some(Some(path)) = keys(list) else {
            return Err(self);
        };
        // Each member beside the list: its path, or none (an absent member reads nothing).
        let Some(others) = beside.iter().map(|m| keys(m)).collect::<Option<Vec<_>>>() else {
            return Err(self);
        };
        let paths: Vec<&[&str]> = others.iter().flatten().map(Vec::as_slice).collect();
        if let Answer::Text { body, .. } = &self.answer
            && let Some((items, found)) = JsonList::find(body, &path, &paths)
        {
            let mut found = found.into_iter();
            let values: Vec<Option<Val<'_>>> = others
                .iter()
                .map(|p| p.as_ref().and_then(|_| found.next().flatten()))
                .collect();
            let rows = Rows {
                items,
                backend: &self.route.backend.name,
            };
            return Ok(read(&rows, &values, body.len()));
        }
        Err(self)
    }
}

/// A list in a backend's answer, read one item at a time ([`Detached::read_list`]).
pub(crate) struct Rows<'a> {
    items: JsonList<'a, 'a>,
    backend: &'a str,
}

impl<'a> Rows<'a> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Hands each row to `f`, in order ([`JsonList::each`]); a row that cannot be read is the
    /// backend's bad answer, after the rows before it.
    pub(crate) fn each(&self, f: impl FnMut(&Val<'a>)) -> Result<(), Error> {
        self.items
            .each(f)
            .map_err(|reason| Error::BackendBadResponse {
                backend: self.backend.to_string(),
                reason,
            })
    }
}

/// A backend request rendered in full ([`Route::render_once`]): it owns all that the rest of
/// the call needs.
#[derive(Debug)]
pub(crate) struct Rendered {
    route: Route,
    request: BackendRequest,
    creds: Creds,
}

impl Rendered {
    /// Sends the request and hands the result to `encode`, as [`Route::answer`] would have.
    pub(crate) async fn answer<R>(
        self,
        encode: impl FnOnce(Lazy<'_>, usize) -> R,
        detach_from: Option<usize>,
    ) -> Result<Shaped<R>, Error> {
        let Rendered {
            route,
            request,
            creds,
        } = self;
        let answer = route.backend.send_rendered(&request, &creds).await?;
        // The request (half a large call's size, as JSON) is not needed while the answer is.
        drop(request);
        static NO_INPUT: Value = Value::Null;
        route.one(
            answer,
            Doc::Json(&NO_INPUT),
            || Value::Null,
            encode,
            detach_from,
        )
    }
}

/// When a route that makes several backend calls for one request (a batch's chunks) stops,
/// so that what it did still reaches the client before the request's time is up; also how a
/// multicall paces its calls. Kept in the request's context (`telemetry::times`), from
/// `App::handle` on ([`crate::pipeline::Pipeline::times`]); background work has none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Times {
    /// No further call is started from here on (80% of the request's time).
    pub stop_starting: Instant,
    /// A call whose backend has not answered is given up here (95%): [`Error::CutOff`].
    pub cut_off: Instant,
    /// The request's time limit (`request_timeout_ms`), for what the client is told.
    pub limit_ms: u64,
}

/// The backend call an operation maps to: its compiled plan, bound to the backend's client.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    plan: Arc<RoutePlan>,
    pub backend: Arc<Backend>,
}

impl Route {
    pub(crate) fn new(plan: Arc<RoutePlan>, backend: Arc<Backend>) -> Route {
        Route { plan, backend }
    }

    /// `METHOD <base URL><path>` and how the call is made, for `check`.
    pub(crate) fn describe(&self) -> String {
        let p = &self.plan;
        let mut s = format!("{} {}{}", p.method, self.backend.base_url(), p.path.text());
        if p.pages.is_some() {
            s.push_str(" (every page)");
        }
        if let Some(b) = &p.batch {
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

    /// The request for the call's parameters and the backend's current credentials; the body
    /// as a JSON value (`as_value`, for batches, which take it apart) or as text written
    /// straight from the call.
    fn render(
        &self,
        input: &Val<'_>,
        creds: &Creds,
        as_value: bool,
    ) -> Result<BackendRequest, Error> {
        let scope = self.scope(input, creds);
        let p = &self.plan;
        let mut path_and_query = p.path.render(&scope).map_err(|expr| {
            crate::protocol::xml::ReadError::MissingElement {
                path: expr.trim_start_matches("$.").replace('.', "/"),
            }
        })?;
        path_and_query.push_str(&render_query(&p.query, &scope).map_err(Error::Internal)?);
        let body = match &p.body {
            Some(t) if as_value => t.eval(&scope).map_or(Body::None, Body::Json),
            Some(t) => {
                // Room for a small request at once (it grew by doubling from nothing); a
                // long list reserves its own room as it is written.
                let mut text = Vec::with_capacity(512);
                if t.write_json(&scope, &mut text) {
                    Body::Raw(text.into())
                } else {
                    Body::None
                }
            }
            None => Body::None,
        };
        let mut headers = Vec::with_capacity(p.headers.len());
        for (name, t) in &p.headers {
            if let Some(v) = t.eval(&scope).filter(|v| !v.is_null()) {
                let text = crate::mapping::scalar_text(&v);
                let value = http::HeaderValue::from_str(&text).map_err(|_| {
                    Error::Internal(format!("header {name}: not a valid header value"))
                })?;
                headers.push((name.clone(), value));
            }
        }
        Ok(BackendRequest {
            method: p.method.clone(),
            path_and_query,
            body,
            headers,
            retry: p.retry,
        })
    }

    /// Renders the backend request from the call's parameters, calls the backend (every page,
    /// or every batch) and shapes its answer into the operation's result, as `serde_json`.
    pub(crate) async fn invoke(&self, input: &Val<'_>) -> Result<Value, Error> {
        self.call(input, |t, scope, _| t.eval(scope)).await
    }

    /// [`Route::invoke`], handing the result to `encode` as a tree evaluated as it is read,
    /// over the backend's answer read in place: a large answer is copied neither into a
    /// result of its own strings nor into a result tree. With it goes the size in bytes of the
    /// answer it was read from (0 when not known): a hint for the size of what is written.
    ///
    /// With `detach_from`, a single answer of at least that many bytes is not shaped here: it
    /// is handed back as a [`Detached`], which owns what its shaping reads, so that the caller
    /// can shape and send it elsewhere (`front::stream` writes it on a blocking thread while it
    /// is sent).
    pub(crate) async fn answer<R>(
        &self,
        input: &Val<'_>,
        encode: impl FnOnce(Lazy<'_>, usize) -> R,
        detach_from: Option<usize>,
    ) -> Result<Shaped<R>, Error> {
        match self.fetch(input).await? {
            Fetched::One(answer) => {
                // The call's parameters go along with a detached answer only when the
                // response mapping reads them.
                let input_json = || {
                    if self.plan.response.uses(Root::Input) {
                        input.to_json()
                    } else {
                        Value::Null
                    }
                };
                self.one(answer, Doc::Call(input), input_json, encode, detach_from)
            }
            fetched => self
                .shape(fetched, input, |t, scope, size| {
                    t.read_with(scope, |tree| encode(tree, size))
                })
                .map(Shaped::Now),
        }
    }

    /// The request of a call that needs nothing more of the call once it is rendered: one
    /// exchange (no pages, no batches), with credentials that are not renewed (which would
    /// render it again), and a response mapping that does not read `$input`. The caller may
    /// then let the call, and the request body it was read from, go before the backend is
    /// called ([`Rendered::answer`]); `None` for any other route.
    pub(crate) async fn render_once(&self, input: &Val<'_>) -> Result<Option<Rendered>, Error> {
        let p = &self.plan;
        if p.batch.is_some() || p.pages.is_some() || p.response.uses(Root::Input) {
            return Ok(None);
        }
        let Some(creds) = self.backend.lasting_creds().await? else {
            return Ok(None);
        };
        let request = self.render(input, &creds, false)?;
        Ok(Some(Rendered {
            route: self.clone(),
            request,
            creds,
        }))
    }

    /// One answer, shaped now, or handed back unshaped (with `input_json`, what `$input`
    /// reads) when it is `detach_from` bytes or more.
    fn one<R>(
        &self,
        answer: Answer,
        input: Doc<'_>,
        input_json: impl FnOnce() -> Value,
        encode: impl FnOnce(Lazy<'_>, usize) -> R,
        detach_from: Option<usize>,
    ) -> Result<Shaped<R>, Error> {
        match answer {
            Answer::Text { status, body } if detach_from.is_some_and(|n| body.len() >= n) => {
                Ok(Shaped::Detached(Detached {
                    route: self.clone(),
                    input: input_json(),
                    answer: Answer::Text { status, body },
                }))
            }
            answer => self
                .shape_one(answer, input, |t, scope, size| {
                    t.read_with(scope, |tree| encode(tree, size))
                })
                .map(Shaped::Now),
        }
    }

    /// Calls the backend and applies `shape` to the response template, the scope of its
    /// answer, and the answer's size.
    async fn call<R>(
        &self,
        input: &Val<'_>,
        shape: impl FnOnce(&Template, &Scope<'_>, usize) -> Option<R>,
    ) -> Result<R, Error> {
        let fetched = self.fetch(input).await?;
        self.shape(fetched, input, shape)
    }

    fn shape<R>(
        &self,
        fetched: Fetched,
        input: &Val<'_>,
        shape: impl FnOnce(&Template, &Scope<'_>, usize) -> Option<R>,
    ) -> Result<R, Error> {
        match fetched {
            Fetched::One(answer) => self.shape_one(answer, Doc::Call(input), shape),
            Fetched::Gathered(answer, batch) => {
                let scope = self.answer_scope(Doc::Json(&answer), Doc::Call(input), batch.as_ref());
                self.shaped(shape(&self.plan.response, &scope, 0))
            }
        }
    }

    /// Calls the backend: one answer, or every page or batch gathered into one `Value` (with
    /// the batches' outcomes).
    async fn fetch(&self, input: &Val<'_>) -> Result<Fetched, Error> {
        Ok(match (&self.plan.batch, &self.plan.pages) {
            (Some(b), _) => {
                let (a, outcomes) = self.send_batches(b, input).await?;
                Fetched::Gathered(a, Some(outcomes))
            }
            (None, Some(p)) => {
                let first = self.backend.send(|c| self.render(input, c, false)).await?;
                Fetched::Gathered(self.gather_pages(p, input, first).await?, None)
            }
            (None, None) => Fetched::One(
                self.backend
                    .send_raw(|c| self.render(input, c, false))
                    .await?,
            ),
        })
    }

    /// Applies `shape` to one answer. It is read in place, borrowing its text, rather than
    /// built as a `Value` of owned keys and strings (unless it has a key written with escapes,
    /// or is not JSON, which `Value` then says).
    fn shape_one<R>(
        &self,
        answer: Answer,
        input: Doc<'_>,
        shape: impl FnOnce(&Template, &Scope<'_>, usize) -> Option<R>,
    ) -> Result<R, Error> {
        if let Answer::Text { body, .. } = &answer
            && let Some(doc) = Val::from_json_slice(body)
        {
            let scope = self.answer_scope(Doc::Call(&doc), input, None);
            return self.shaped(shape(&self.plan.response, &scope, body.len()));
        }
        let answer = answer.into_json(&self.backend)?;
        let scope = self.answer_scope(Doc::Json(&answer), input, None);
        self.shaped(shape(&self.plan.response, &scope, 0))
    }

    /// What the response mapping reads: the backend's answer as `$`, the call as `$input`.
    fn answer_scope<'a>(
        &'a self,
        answer: Doc<'a>,
        input: Doc<'a>,
        batch: Option<&'a Value>,
    ) -> Scope<'a> {
        let mut scope = Scope::new(answer, input);
        scope.vars = Some(&self.backend.vars);
        scope.batch = batch;
        scope
    }

    /// The operation's result, or the error for an answer that lacks what the mapping reads.
    fn shaped<R>(&self, result: Option<R>) -> Result<R, Error> {
        result.ok_or_else(|| Error::BackendBadResponse {
            backend: self.backend.name.clone(),
            reason: "the answer lacks the fields the response mapping reads".into(),
        })
    }

    /// Follows `next` links from the first page, gathering every page's items into it.
    async fn gather_pages(
        &self,
        p: &PagesPlan,
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
                    let headers = self.render(input, c, false)?.headers;
                    Ok(BackendRequest {
                        method: Method::GET,
                        path_and_query: rel.clone(),
                        body: Body::None,
                        headers,
                        retry: false,
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
        b: &BatchPlan,
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
            let mut req = self.render(input, creds, true)?;
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
    async fn send_batches(&self, b: &BatchPlan, input: &Val<'_>) -> Result<(Value, Value), Error> {
        let items = match self.render(input, &Creds::default(), true)?.body {
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
        let times = crate::telemetry::times();
        while let Some(chunk) = chunks.next() {
            if let Some(t) = times.filter(|t| calls > 0 && Instant::now() >= t.stop_starting) {
                // What was done must reach the client within the request's time.
                let later = format!(
                    "not sent: the request's time limit of {} ms was nearly up; send it again",
                    t.limit_ms
                );
                for i in chunk.iter().chain(chunks.by_ref().flatten()) {
                    outcomes[*i] = Some(outcome(*i, &items[*i], "not_sent", &[], Some(&later)));
                }
                break;
            }
            calls += 1;
            let sent = self.send_within(times, |c| chunk_of(c, chunk)).await;
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
                        let again = self.send_within(times, |c| chunk_of(c, &valid)).await;
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

    /// Sends one request of several for a request with `times`: given up when its backend has
    /// not answered at their `cut_off` ([`Error::CutOff`]).
    async fn send_within(
        &self,
        times: Option<Times>,
        render: impl Fn(&Creds) -> Result<BackendRequest, Error>,
    ) -> Result<Value, Error> {
        let send = self.backend.send(render);
        match times {
            None => send.await,
            Some(t) => tokio::time::timeout_at(t.cut_off.into(), send)
                .await
                .unwrap_or(Err(Error::CutOff {
                    limit_ms: t.limit_ms,
                })),
        }
    }

    /// Marks a refused chunk's items from the refusal's per-item errors (`item_errors`, a
    /// list aligned with the items sent); items without errors are returned, as still valid.
    /// Without an aligned list every item fails with the refusal.
    fn record_refusal(
        &self,
        b: &BatchPlan,
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

    /// The route of the test service's one operation, with `backend` settings and `mapping`
    /// keys of its own.
    fn route(backend: &str, mapping: &str) -> Route {
        let plan = crate::config::tests::plan_of(&format!(
            "[backends.b]\nbase_url = \"http://127.0.0.1:9\"\n{backend}\n\n\
             [mappings.m.ping]\npath = \"/ping/{{$.x}}\"\n{mapping}\n\n\
             [[services]]\nname = \"T\"\npath = \"/t\"\nwsdl = \"t.wsdl\"\n\
             backend = \"b\"\nmappings = \"m\"\n"
        ));
        let crate::config::Action::Backend(r) = &plan.services[0].operations[0] else {
            panic!("ping is a backend call");
        };
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(false));
        let backend = Backend::new(
            &plan.backends["b"],
            crate::clock::Clock::system(),
            telemetry,
        );
        Route::new(r.clone(), Arc::new(backend))
    }

    #[tokio::test]
    async fn a_request_is_rendered_once_only_when_nothing_else_needs_the_call() {
        let call = Val::Obj(vec![("x", Val::Str("a1".into()))]);
        // A plain call, with fixed credentials: rendered, and the call may go.
        for backend in [
            "",
            "auth = { kind = \"basic\", user = \"u\", password = \"p\" }",
        ] {
            let rendered = route(backend, "").render_once(&call).await.unwrap();
            let r = rendered.unwrap_or_else(|| panic!("{backend:?}: rendered once"));
            assert_eq!(r.request.path_and_query, "/ping/a1");
            assert_eq!(
                r.creds.authorization.is_some(),
                !backend.is_empty(),
                "{backend:?}"
            );
        }
        // The answer's mapping reads the call; every page is rendered from it; a session
        // that expires renders the request again with the new one: the call is kept.
        let session = "auth = { kind = \"session\", path = \"/login\", body = { u = \"x\" }, \
                       session = \"$.id\" }";
        for (backend, mapping) in [
            ("", "response = { y = \"$input.x\" }"),
            ("", "pages = { next = \"$.next\", items = \"$.items\" }"),
            (session, ""),
        ] {
            let rendered = route(backend, mapping).render_once(&call).await.unwrap();
            assert!(rendered.is_none(), "{backend:?} {mapping:?}");
        }
    }

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
