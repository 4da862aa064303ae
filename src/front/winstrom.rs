//! The winstrom front door (ABRA Flexi clients): `/c/{company}/{evidence}[/{id}|/({filter})].{xml|json}`.
//!
//! A company names the backend (and its tenant) holding its data and the HTTP Basic users who
//! may use it. An evidence is configuration: its properties (Flexi name, type, backend name,
//! which filter operators the backend can apply to it), its routes (`list`, `get`, `create`,
//! `update`: operation mappings like any other) and its actions (`delete`,
//! `prepocti-nakupni-cenu`, ...). Reading lists or one record; importing a document creates,
//! updates or acts on each record; a WQL filter becomes a structured JSON filter for the
//! backend, never a string to splice. Every answer and every error is in Flexi's shape, in the
//! format the URL's extension asks for; errors are turned into answers only in [`reply`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::server::Body as Incoming;
use chrono::FixedOffset;
use http::{HeaderValue, Method, Request, StatusCode};
use serde_json::Value;

use crate::app::{App, Resp, text_response};
use crate::backend::Backend;
use crate::call::Val;
use crate::config::{Config, ConfigError, WinstromConfig};
use crate::error::{Error, Party};
use crate::profile::Profile;
use crate::protocol::winstrom::{
    self, Format, Outcome, PathError, RawValue, Record, RecordError, Reply, Stats, Target,
};
use crate::protocol::wql;
use crate::route::Route;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    String,
    Int,
    Decimal,
    Bool,
    Date,
}

#[derive(Debug)]
struct Field {
    name: String,
    ty: FieldType,
    backend: String,
    /// Structured-filter operators the backend applies to this field.
    ops: Vec<String>,
    read_only: bool,
}

#[derive(Debug)]
struct Evidence {
    name: String,
    class: String,
    code_field: Option<String>,
    fields: Vec<Field>,
    list: Route,
    get: Option<Route>,
    create: Option<Route>,
    update: Option<Route>,
    /// In name order (the order Flexi lists them in its message).
    actions: BTreeMap<String, Route>,
}

#[derive(Debug)]
struct Company {
    tenant: String,
    profile: Arc<Profile>,
    evidences: HashMap<String, Evidence>,
}

/// The compiled winstrom door.
#[derive(Debug)]
pub struct Winstrom {
    pub prefix: String,
    max_records: usize,
    max_matches: usize,
    filter_limits: wql::Limits,
    offset: FixedOffset,
    /// What `now()` in a filter is.
    clock: crate::clock::Clock,
    companies: HashMap<String, Company>,
}

const NUMBER_OPS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "between",
    "in",
    "is_null",
    "is_not_null",
];
const TEXT_OPS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "like",
    "begins",
    "ends",
    "in",
    "is_null",
    "is_not_null",
];
const BOOL_OPS: &[&str] = &["eq", "ne", "is_true", "is_false", "is_null", "is_not_null"];
const ALL_OPS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "like",
    "like_similar",
    "begins",
    "begins_similar",
    "ends",
    "between",
    "in",
    "in_subtree",
    "is_true",
    "is_false",
    "is_null",
    "is_not_null",
    "is_empty",
    "is_not_empty",
];

impl Winstrom {
    pub fn build(
        cfg: &Config,
        w: &WinstromConfig,
        backends: &HashMap<String, Arc<Backend>>,
        profiles: &HashMap<String, Arc<Profile>>,
        clock: crate::clock::Clock,
    ) -> Result<Winstrom, ConfigError> {
        let prefix = w.path.trim_end_matches('/').to_string();
        if !prefix.starts_with('/') {
            return Err(cfg.err("winstrom.path", "must start with '/'"));
        }
        let mut companies = HashMap::new();
        for (name, c) in &w.companies {
            let key = format!("winstrom.companies.{name}");
            let backend = backends.get(&c.backend).ok_or_else(|| {
                cfg.err(
                    format!("{key}.backend"),
                    format!("no [backends.{}] is defined", c.backend),
                )
            })?;
            let profile = profiles.get(&c.profile).ok_or_else(|| {
                cfg.err(
                    format!("{key}.profile"),
                    format!("no [profiles.{}] is defined", c.profile),
                )
            })?;
            if profile.signed().is_some() {
                return Err(cfg.err(
                    format!("{key}.profile"),
                    "must be a basic profile (winstrom clients send HTTP Basic only)",
                ));
            }
            let mut evidences = HashMap::new();
            for (ev, e) in &w.evidences {
                evidences.insert(ev.clone(), evidence(cfg, ev, e, backend)?);
            }
            companies.insert(
                name.clone(),
                Company {
                    tenant: c.tenant.clone().unwrap_or_else(|| name.clone()),
                    profile: profile.clone(),
                    evidences,
                },
            );
        }
        Ok(Winstrom {
            prefix,
            max_records: w.max_records.max(1),
            max_matches: w.max_matches.max(1),
            filter_limits: wql::Limits {
                terms: w.max_filter_terms.max(1),
                nodes: w.max_filter_nodes.max(1),
                ..wql::Limits::default()
            },
            offset: FixedOffset::east_opt(3600).expect("valid offset"),
            clock,
            companies,
        })
    }

    /// `check` lines: each evidence and what its routes call.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.companies.keys().collect();
        names.sort();
        for name in names {
            let c = &self.companies[name];
            out.push(format!(
                "winstrom {}/{name} (tenant {}, profile {})",
                self.prefix,
                c.tenant,
                c.profile.name()
            ));
            let mut evs: Vec<&Evidence> = c.evidences.values().collect();
            evs.sort_by(|a, b| a.name.cmp(&b.name));
            for e in evs {
                out.push(format!("  {:<24} list -> {}", e.name, e.list.describe()));
                for (k, r) in [
                    ("get", &e.get),
                    ("create", &e.create),
                    ("update", &e.update),
                ] {
                    if let Some(r) = r {
                        out.push(format!("  {:<24} {k} -> {}", "", r.describe()));
                    }
                }
                for (a, r) in &e.actions {
                    out.push(format!("  {:<24} action {a} -> {}", "", r.describe()));
                }
            }
        }
        out
    }
}

fn evidence(
    cfg: &Config,
    name: &str,
    e: &crate::config::EvidenceConfig,
    backend: &Arc<Backend>,
) -> Result<Evidence, ConfigError> {
    let key = format!("winstrom.evidences.{name}");
    let mut fields = Vec::new();
    for (i, f) in e.fields.iter().enumerate() {
        let fkey = format!("{key}.fields[{i}]");
        let ty = match f.ty.as_str() {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "decimal" => FieldType::Decimal,
            "bool" => FieldType::Bool,
            "date" => FieldType::Date,
            other => {
                return Err(cfg.err(
                    format!("{fkey}.type"),
                    format!("unknown type '{other}' (string, int, decimal, bool, date)"),
                ));
            }
        };
        let ops: Vec<String> = match &f.filter {
            None => Vec::new(),
            Some(Value::String(g)) => match g.as_str() {
                "number" => NUMBER_OPS,
                "text" => TEXT_OPS,
                "bool" => BOOL_OPS,
                other => {
                    return Err(cfg.err(
                        format!("{fkey}.filter"),
                        format!("unknown operator group '{other}' (number, text, bool, or a list)"),
                    ));
                }
            }
            .iter()
            .map(|s| s.to_string())
            .collect(),
            Some(Value::Array(list)) => {
                let mut ops = Vec::new();
                for o in list {
                    match o.as_str() {
                        Some(o) if ALL_OPS.contains(&o) => ops.push(o.to_string()),
                        _ => {
                            return Err(cfg.err(
                                format!("{fkey}.filter"),
                                format!("unknown operator {o} (known: {})", ALL_OPS.join(", ")),
                            ));
                        }
                    }
                }
                ops
            }
            Some(_) => {
                return Err(cfg.err(format!("{fkey}.filter"), "must be a group name or a list"));
            }
        };
        fields.push(Field {
            name: f.name.clone(),
            ty,
            backend: f.backend.clone().unwrap_or_else(|| f.name.clone()),
            ops,
            read_only: f.read_only,
        });
    }
    if let Some(c) = &e.code_field
        && !fields.iter().any(|f| &f.name == c)
    {
        return Err(cfg.err(
            format!("{key}.code_field"),
            format!("'{c}' is not one of the fields"),
        ));
    }
    let compile = |k: &str, m: &crate::config::OperationMapping| {
        let m = match &m.backend {
            Some(_) => {
                return Err(cfg.err(
                    format!("{key}.{k}.backend"),
                    "a winstrom route uses its company's backend",
                ));
            }
            None => m,
        };
        Route::compile(m, backend.clone(), None)
            .map_err(|(sub, e)| cfg.err(format!("{key}.{k}.{sub}"), e))
    };
    for r in e.routes.keys() {
        if !["list", "get", "create", "update"].contains(&r.as_str()) {
            return Err(cfg.err(
                format!("{key}.routes.{r}"),
                "unknown route (list, get, create, update)",
            ));
        }
    }
    let route = |r: &str| {
        e.routes
            .get(r)
            .map(|m| compile(&format!("routes.{r}"), m))
            .transpose()
    };
    let list = route("list")?
        .ok_or_else(|| cfg.err(format!("{key}.routes"), "needs at least a list route"))?;
    let mut actions = BTreeMap::new();
    for (a, m) in &e.actions {
        actions.insert(a.clone(), compile(&format!("actions.{a}"), m)?);
    }
    Ok(Evidence {
        name: name.to_string(),
        class: e.class.clone().unwrap_or_else(|| name.to_string()),
        code_field: e.code_field.clone(),
        fields,
        list,
        get: route("get")?,
        create: route("create")?,
        update: route("update")?,
        actions,
    })
}

// ---- requests ------------------------------------------------------------------------------

/// A failure of a whole request, with its HTTP status and Flexi message.
struct Failure {
    status: StatusCode,
    message: String,
}

fn failure(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

/// The only place answers are written: status, Flexi reply, format; logs one line.
fn reply(status: StatusCode, r: &Reply, format: Format, company: &str, code: &str) -> Resp {
    tracing::info!(
        door = "winstrom",
        company,
        status = status.as_u16(),
        code,
        "answer"
    );
    text_response(status, format.content_type(), winstrom::encode(r, format))
}

fn fail_response(f: Failure, format: Format, company: &str, challenge: Option<String>) -> Resp {
    let mut r = reply(
        f.status,
        &Reply::Error { message: f.message },
        format,
        company,
        "error",
    );
    if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    if f.status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, POST, PUT, DELETE"),
        );
    }
    r
}

/// Query parameters the door understands (others are ignored, as Flexi ignores many).
#[derive(Debug, Default)]
struct Query {
    start: i64,
    limit: i64,
    row_count: bool,
    dry_run: bool,
}

fn parse_query(q: Option<&str>) -> Result<Query, Failure> {
    let mut out = Query {
        limit: 20,
        ..Query::default()
    };
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        let flag = |v: &str| matches!(v, "true" | "1" | "yes");
        let num = |v: &str| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                failure(
                    StatusCode::BAD_REQUEST,
                    format!("Parametr '{k}' musí být nezáporné celé číslo, ne '{v}'."),
                )
            })
        };
        match k {
            "start" => out.start = num(v)?,
            "limit" => out.limit = num(v)?,
            "add-row-count" => out.row_count = flag(v),
            "dry-run" => out.dry_run = flag(v),
            _ => {}
        }
    }
    Ok(out)
}

/// Answers one request under the winstrom prefix.
pub async fn handle(app: &App, w: &Winstrom, req: Request<Incoming>, started: Instant) -> Resp {
    let rest = &req.uri().path()[w.prefix.len()..];
    let guess = if rest.ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    };
    let parts = match winstrom::parse_path(rest) {
        Ok(p) => p,
        Err(PathError::NotFound(m)) => {
            return fail_response(failure(StatusCode::NOT_FOUND, m), guess, "-", None);
        }
        Err(PathError::BadRequest(m)) => {
            return fail_response(failure(StatusCode::BAD_REQUEST, m), guess, "-", None);
        }
        Err(PathError::UnknownFormat(ext)) => {
            return fail_response(
                failure(
                    StatusCode::NOT_ACCEPTABLE,
                    format!("Formát '{ext}' není podporován: použijte .xml nebo .json."),
                ),
                guess,
                "-",
                None,
            );
        }
    };
    let format = parts.format;
    let Some(company) = w.companies.get(&parts.company) else {
        let m = format!("Firma '{}' neexistuje.", parts.company);
        return fail_response(failure(StatusCode::NOT_FOUND, m), format, "-", None);
    };
    let user = match company.profile.authenticate(
        req.headers()
            .get(http::header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        Ok(u) => u.to_string(),
        Err(_) => {
            return fail_response(
                failure(
                    StatusCode::UNAUTHORIZED,
                    "Neplatné přihlašovací údaje: přihlaste se jménem a heslem uživatele firmy (HTTP Basic).",
                ),
                format,
                &parts.company,
                Some(company.profile.www_authenticate()),
            );
        }
    };
    let Some(ev) = company.evidences.get(&parts.evidence) else {
        let m = format!("Evidence '{}' neexistuje.", parts.evidence);
        return fail_response(
            failure(StatusCode::NOT_FOUND, m),
            format,
            &parts.company,
            None,
        );
    };
    let query = match parse_query(req.uri().query()) {
        Ok(q) => q,
        Err(f) => return fail_response(f, format, &parts.company, None),
    };
    let ctx = Ctx {
        w,
        company,
        company_name: &parts.company,
        user: &user,
        format,
        deadline: app.record_deadline(started),
    };
    let method = req.method().clone();
    let target = parts.target.clone();
    let content_type = crate::app::header_str(&req, http::header::CONTENT_TYPE).map(str::to_string);
    let work = async {
        match (&method, &target) {
            (&Method::GET | &Method::HEAD, Target::All) => ctx.list(ev, None, &query).await,
            (&Method::GET | &Method::HEAD, Target::Filter(f)) => {
                ctx.list(ev, Some(f), &query).await
            }
            (&Method::GET | &Method::HEAD, Target::Id(id)) => ctx.get(ev, id).await,
            (&Method::POST | &Method::PUT, _) => {
                let body = app
                    .read_body(req.into_body())
                    .await
                    .map_err(|e| failure_of(&e))?;
                let text = crate::protocol::xml::decode_body(&body, content_type.as_deref())
                    .map_err(|e| failure_of(&e))?;
                let doc = winstrom::decode_document(&text, app.max_depth(), w.max_records)
                    .map_err(|e| failure_of(&e))?;
                let id = match &target {
                    Target::Id(id) => Some(id.as_str()),
                    _ => None,
                };
                Ok(ctx
                    .import(ev, doc.records, doc.atomic, id, query.dry_run)
                    .await)
            }
            (&Method::DELETE, Target::Id(id)) => {
                let rec = Record {
                    evidence: ev.name.clone(),
                    ids: vec![id.clone()],
                    action: Some("delete".into()),
                    filter: None,
                    fields: Vec::new(),
                };
                Ok(ctx.import(ev, vec![rec], true, None, query.dry_run).await)
            }
            _ => Err(failure(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Metoda {method} zde není povolena."),
            )),
        }
    };
    let done = app.within_request_time(work).await;
    match done {
        Ok(Ok((status, r))) => reply(status, &r, format, &parts.company, "ok"),
        Ok(Err(f)) => fail_response(f, format, &parts.company, None),
        Err(e) => fail_response(failure_of(&e), format, &parts.company, None),
    }
}

struct Ctx<'a> {
    w: &'a Winstrom,
    company: &'a Company,
    company_name: &'a str,
    user: &'a str,
    format: Format,
    /// No record is started after this: the rest are reported skipped, before the whole
    /// request's time limit would cut the answer off.
    deadline: Instant,
}

/// What one record's work came to.
enum Done {
    Created(String),
    Updated(String),
    Deleted(String),
}

/// Why one record failed: its errors, and whether the record was not found.
struct RecordFailure {
    errors: Vec<RecordError>,
    not_found: bool,
}

/// A record's failure, or a backend failure that stops the whole request.
enum StepError {
    Record(RecordFailure),
    Backend(Error),
}

impl From<RecordFailure> for StepError {
    fn from(f: RecordFailure) -> Self {
        StepError::Record(f)
    }
}

fn record_error(message: impl Into<String>, code: &str) -> RecordFailure {
    RecordFailure {
        errors: vec![RecordError {
            message: message.into(),
            code: Some(code.into()),
            ..RecordError::default()
        }],
        not_found: false,
    }
}

impl<'a> Ctx<'a> {
    fn reference(&self, ev: &str, id: &str) -> String {
        let mut r = format!("{}/{}/{ev}/", self.w.prefix, self.company_name);
        crate::mapping::percent_encode_into(&mut r, id);
        r.push('.');
        r.push_str(self.format.ext());
        r
    }

    fn input<'v>(&'v self, members: Vec<(&'v str, Val<'v>)>) -> Val<'v> {
        let mut m = vec![("tenant", Val::Str(self.company.tenant.as_str().into()))];
        m.extend(members);
        Val::Obj(m)
    }

    /// A WQL filter as the backend's structured filter (field names translated), or the
    /// reason it cannot be sent.
    fn filter_json(&self, ev: &Evidence, text: &str) -> Result<Value, Failure> {
        let f = wql::parse_with(text, &self.w.filter_limits)
            .map_err(|e| failure(StatusCode::BAD_REQUEST, e.to_string()))?;
        for (field, op) in wql::operators_used(&f) {
            let Some(def) = ev.fields.iter().find(|d| d.name == field) else {
                let known: Vec<&str> = ev
                    .fields
                    .iter()
                    .filter(|d| !d.ops.is_empty())
                    .map(|d| d.name.as_str())
                    .collect();
                return Err(failure(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Filtr nelze použít: podle vlastnosti '{field}' evidence '{}' nelze filtrovat (lze podle: {}).",
                        ev.name,
                        known.join(", ")
                    ),
                ));
            };
            if !def.ops.iter().any(|o| o == op) {
                let wql = |o: &str| o.replace('_', " ");
                let allowed: Vec<String> = def.ops.iter().map(|o| wql(o)).collect();
                return Err(failure(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Filtr nelze použít: operátor '{}' u vlastnosti '{field}' backend nepodporuje (lze: {}).",
                        wql(op),
                        if allowed.is_empty() {
                            "žádný".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
        }
        let now = self.w.clock.now().with_timezone(&self.w.offset);
        let mut json = wql::to_json(
            &f,
            &wql::Context {
                now,
                user: self.user,
            },
        );
        rename_fields(&mut json, ev);
        Ok(json)
    }

    async fn list(
        &self,
        ev: &Evidence,
        filter: Option<&str>,
        q: &Query,
    ) -> Result<(StatusCode, Reply), Failure> {
        let filter = match filter {
            Some(t) => self.filter_json(ev, t)?,
            None => Value::Null,
        };
        let (rows, total) = self
            .search(ev, &filter, q.start, q.limit, q.row_count)
            .await
            .map_err(|e| failure_of(&e))?;
        Ok((
            StatusCode::OK,
            Reply::Rows {
                evidence: ev.name.clone(),
                rows: rows.iter().map(|r| row(ev, r)).collect(),
                row_count: if q.row_count {
                    total.or(Some(rows.len() as u64))
                } else {
                    None
                },
            },
        ))
    }

    async fn search(
        &self,
        ev: &Evidence,
        filter: &Value,
        start: i64,
        limit: i64,
        count: bool,
    ) -> Result<(Vec<Value>, Option<u64>), Error> {
        let input = self.input(vec![
            ("filter", Val::borrowed(filter)),
            ("start", Val::Int(start)),
            ("limit", Val::Int(limit)),
            ("count", Val::Bool(count)),
        ]);
        let result = ev.list.invoke(&input).await?;
        let rows = match result.get("rows") {
            Some(Value::Array(rows)) => rows.clone(),
            _ => Vec::new(),
        };
        Ok((rows, result.get("total").and_then(Value::as_u64)))
    }

    async fn get(&self, ev: &Evidence, id: &str) -> Result<(StatusCode, Reply), Failure> {
        let result = match &ev.get {
            Some(route) => route
                .invoke(&self.input(vec![("id", Val::Str(id.into()))]))
                .await
                .map(|r| r.get("row").cloned()),
            None => {
                return Err(failure(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("Evidence '{}' neumožňuje číst jednotlivé záznamy.", ev.name),
                ));
            }
        };
        match result {
            Ok(Some(r)) if !r.is_null() => Ok((
                StatusCode::OK,
                Reply::Rows {
                    evidence: ev.name.clone(),
                    rows: vec![row(ev, &r)],
                    row_count: None,
                },
            )),
            Ok(_) => Err(failure(StatusCode::NOT_FOUND, not_found(ev, id))),
            Err(Error::BackendRefused(r)) if r.status == 404 => {
                Err(failure(StatusCode::NOT_FOUND, not_found(ev, id)))
            }
            Err(e) => Err(failure_of(&e)),
        }
    }

    /// Imports a document: each record created, updated or acted on. An atomic document of
    /// several records is first sent as a dry run, so that nothing is stored when any record
    /// would fail.
    async fn import(
        &self,
        url_ev: &Evidence,
        records: Vec<Record<'_>>,
        atomic: bool,
        url_id: Option<&str>,
        dry_run: bool,
    ) -> (StatusCode, Reply) {
        let single = records.len() == 1;
        // Several records, or one whose filter may select several: all or nothing.
        if atomic && !dry_run && (records.len() > 1 || records.iter().any(|r| r.filter.is_some())) {
            let (status, mut r) = self.run(url_ev, &records, true, None, true).await;
            if status.is_client_error() || status.is_server_error() {
                // Nothing was stored: the records that passed the dry run are skipped.
                if let Reply::Import { stats, results, .. } = &mut r {
                    stats.skipped += stats.created + stats.updated + stats.deleted;
                    (stats.created, stats.updated, stats.deleted) = (0, 0, 0);
                    for o in results.iter_mut().filter(|o| o.errors.is_empty()) {
                        o.id = None;
                        o.reference = None;
                    }
                }
                return (status, r);
            }
        }
        self.run(url_ev, &records, atomic, url_id.filter(|_| single), dry_run)
            .await
    }

    async fn run(
        &self,
        url_ev: &Evidence,
        records: &[Record<'_>],
        atomic: bool,
        url_id: Option<&str>,
        dry_run: bool,
    ) -> (StatusCode, Reply) {
        let mut stats = Stats::default();
        let mut results = Vec::new();
        let mut all_not_found = true;
        let mut message = None;
        let mut backend_error = None;
        let mut out_of_time = false;
        for (i, rec) in records.iter().enumerate() {
            if !out_of_time && Instant::now() >= self.deadline {
                out_of_time = true;
                message = Some(format!(
                    "Časový limit požadavku vypršel: záznamy od {}. nebyly zpracovány (skipped); pošlete je znovu.",
                    i + 1
                ));
            }
            if out_of_time || backend_error.is_some() || (atomic && stats.failed > 0) {
                stats.skipped += 1;
                continue;
            }
            let ev = if rec.evidence == url_ev.name {
                url_ev
            } else {
                match self.company.evidences.get(&rec.evidence) {
                    Some(e) => e,
                    None => {
                        stats.failed += 1;
                        all_not_found = false;
                        let m = format!("Evidence '{}' neexistuje.", rec.evidence);
                        message.get_or_insert_with(|| m.clone());
                        results.push(Outcome {
                            errors: record_error(m, "UNKNOWN_EVIDENCE").errors,
                            ..Outcome::default()
                        });
                        continue;
                    }
                }
            };
            let mut ids = rec.ids.clone();
            if ids.is_empty()
                && let Some(id) = url_id
            {
                ids.push(id.to_string());
            }
            let request_id = ids.first().cloned();
            if let Some(reason) = ids.iter().find_map(|id| winstrom::check_id(id).err()) {
                stats.failed += 1;
                all_not_found = false;
                message.get_or_insert_with(|| reason.clone());
                results.push(Outcome {
                    request_id,
                    errors: record_error(reason, "INVALID_ID").errors,
                    ..Outcome::default()
                });
                continue;
            }
            match self
                .record(ev, rec, &ids, i + 1, dry_run, &mut results, &mut stats)
                .await
            {
                Ok(()) => {}
                Err(StepError::Record(f)) => {
                    stats.failed += 1;
                    all_not_found &= f.not_found;
                    message.get_or_insert_with(|| f.errors[0].message.clone());
                    results.push(Outcome {
                        request_id,
                        errors: f.errors,
                        ..Outcome::default()
                    });
                }
                Err(StepError::Backend(e)) => {
                    stats.failed += 1;
                    let m = backend_message(&e);
                    message = Some(m.clone());
                    results.push(Outcome {
                        request_id,
                        errors: vec![RecordError {
                            message: m,
                            code: Some(e.code().to_string()),
                            ..RecordError::default()
                        }],
                        ..Outcome::default()
                    });
                    backend_error = Some(e);
                }
            }
        }
        let status = if let Some(e) = &backend_error {
            status_of(e)
        } else if out_of_time {
            StatusCode::GATEWAY_TIMEOUT
        } else if stats.failed > 0 && all_not_found {
            StatusCode::NOT_FOUND
        } else if stats.failed > 0 {
            StatusCode::BAD_REQUEST
        } else if stats.created > 0 && !dry_run {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (
            status,
            Reply::Import {
                success: stats.failed == 0 && !out_of_time,
                stats,
                results,
                message: if stats.failed > 0 || out_of_time {
                    message
                } else {
                    None
                },
            },
        )
    }

    /// One record: an action (on its id, or on every record its filter selects), an update
    /// (by id, or of every record its filter selects), or a create.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        ev: &Evidence,
        rec: &Record<'_>,
        ids: &[String],
        index: usize,
        dry_run: bool,
        results: &mut Vec<Outcome>,
        stats: &mut Stats,
    ) -> Result<(), StepError> {
        let fields = typed_fields(ev, rec, index)?;
        let route = match &rec.action {
            Some(a) => Some(ev.actions.get(a).ok_or_else(|| {
                let allowed: Vec<&str> = ev.actions.keys().map(String::as_str).collect();
                let mut f = record_error(
                    format!(
                        "Atribut 'action' obsahuje špatnou hodnotu. Pro daný objekt smí obsahovat jen: [{}] [{index}]",
                        allowed.join(", ")
                    ),
                    "INVALID_ACTION",
                );
                f.errors[0].for_ = Some("action".into());
                f.errors[0].value = Some(a.clone());
                StepError::Record(f)
            })?),
            None => None,
        };
        // The records this one applies to.
        let targets: Vec<(String, bool)> = match (&rec.filter, ids.first()) {
            (Some(text), _) => {
                let filter = self.filter_json(ev, text).map_err(|f| {
                    let mut e = record_error(f.message, "INVALID_FILTER");
                    e.errors[0].for_ = Some("filter".into());
                    e.errors[0].value = Some(text.clone());
                    StepError::Record(e)
                })?;
                let limit = self.w.max_matches as i64 + 1;
                let (rows, _) = match self.search(ev, &filter, 0, limit, false).await {
                    Ok(r) => r,
                    // The backend could not apply the filter: the record's error, not an outage.
                    Err(e @ Error::BackendRefused(_)) if e.party() == Party::Caller => {
                        let Error::BackendRefused(r) = e else {
                            unreachable!()
                        };
                        let mut e = record_error(r.message, "INVALID_FILTER");
                        e.errors[0].for_ = Some("filter".into());
                        e.errors[0].value = Some(text.clone());
                        return Err(e.into());
                    }
                    Err(e) => return Err(StepError::Backend(e)),
                };
                if rows.len() > self.w.max_matches {
                    return Err(record_error(
                        format!(
                            "Filtr vybral více než {} záznamů; zužte jej.",
                            self.w.max_matches
                        ),
                        "TOO_MANY_MATCHES",
                    )
                    .into());
                }
                rows.iter()
                    .filter_map(|r| r.get(id_backend(ev)).map(scalar))
                    .map(|id| (id, false))
                    .collect()
            }
            (None, Some(id)) => vec![(id.clone(), true)],
            (None, None) if route.is_some() => {
                return Err(record_error(
                    format!(
                        "Akce '{}' potřebuje id záznamu nebo filtr [{index}]",
                        rec.action.as_deref().unwrap_or("")
                    ),
                    "MISSING_ID",
                )
                .into());
            }
            (None, None) => {
                let create = ev.create.as_ref().ok_or_else(|| {
                    record_error(
                        format!("Evidence '{}' neumožňuje zakládat záznamy.", ev.name),
                        "NOT_ALLOWED",
                    )
                })?;
                let input = self.input(vec![
                    ("record", Val::Obj(fields)),
                    ("dry_run", Val::Bool(dry_run)),
                ]);
                let id = self.call(ev, create, &input, "", index, rec).await?;
                stats.created += 1;
                results.push(Outcome {
                    reference: (!dry_run).then(|| self.reference(&ev.name, &id)),
                    id: (!id.is_empty()).then_some(id),
                    ..Outcome::default()
                });
                return Ok(());
            }
        };
        for (id, given) in targets {
            let request_id = given.then(|| id.clone());
            let done = match route {
                Some(r) => {
                    let input = self.input(vec![
                        ("id", Val::Str(id.as_str().into())),
                        ("dry_run", Val::Bool(dry_run)),
                    ]);
                    let new_id = self.call(ev, r, &input, &id, index, rec).await?;
                    let new_id = if new_id.is_empty() {
                        id.clone()
                    } else {
                        new_id
                    };
                    if rec.action.as_deref() == Some("delete") {
                        Done::Deleted(new_id)
                    } else {
                        Done::Updated(new_id)
                    }
                }
                None => {
                    self.update(ev, &id, fields.clone(), index, dry_run, rec)
                        .await?
                }
            };
            let id = match done {
                Done::Created(id) => {
                    stats.created += 1;
                    id
                }
                Done::Updated(id) => {
                    stats.updated += 1;
                    id
                }
                Done::Deleted(id) => {
                    stats.deleted += 1;
                    id
                }
            };
            results.push(Outcome {
                reference: Some(self.reference(&ev.name, &id)),
                id: Some(id),
                request_id,
                errors: Vec::new(),
            });
        }
        Ok(())
    }

    /// Updates a record by id; a `code:` id that does not exist yet creates the record with
    /// that code, as Flexi does.
    async fn update<'v>(
        &self,
        ev: &Evidence,
        id: &str,
        fields: Vec<(&'v str, Val<'v>)>,
        index: usize,
        dry_run: bool,
        rec: &Record<'_>,
    ) -> Result<Done, StepError> {
        let update = ev.update.as_ref().ok_or_else(|| {
            record_error(
                format!("Evidence '{}' neumožňuje měnit záznamy.", ev.name),
                "NOT_ALLOWED",
            )
        })?;
        let input = self.input(vec![
            ("id", Val::Str(id.into())),
            ("record", Val::Obj(fields.clone())),
            ("dry_run", Val::Bool(dry_run)),
        ]);
        match self.call(ev, update, &input, id, index, rec).await {
            Ok(new_id) => Ok(Done::Updated(if new_id.is_empty() {
                id.to_string()
            } else {
                new_id
            })),
            Err(StepError::Record(f)) if f.not_found => {
                let (Some(code), Some(create), Some(code_field)) =
                    (id.strip_prefix("code:"), &ev.create, &ev.code_field)
                else {
                    return Err(StepError::Record(f));
                };
                let def = ev
                    .fields
                    .iter()
                    .find(|d| &d.name == code_field)
                    .expect("validated");
                let mut fields = fields;
                fields.retain(|(k, _)| *k != def.backend.as_str());
                fields.push((def.backend.as_str(), Val::Str(code.into())));
                let input = self.input(vec![
                    ("record", Val::Obj(fields)),
                    ("dry_run", Val::Bool(dry_run)),
                ]);
                let new_id = self.call(ev, create, &input, "", index, rec).await?;
                Ok(Done::Created(new_id))
            }
            Err(e) => Err(e),
        }
    }

    /// Calls a route; returns the `id` its result names. Refusals become the record's errors
    /// (a 404 is "not found"), other failures stop the request.
    async fn call(
        &self,
        ev: &Evidence,
        route: &Route,
        input: &Val<'_>,
        id: &str,
        index: usize,
        rec: &Record<'_>,
    ) -> Result<String, StepError> {
        match route.invoke(input).await {
            Ok(v) => Ok(v.get("id").map(scalar).unwrap_or_default()),
            Err(Error::BackendRefused(r)) if r.status == 404 => {
                Err(StepError::Record(RecordFailure {
                    errors: vec![RecordError {
                        message: not_found(ev, id),
                        code: Some("NOT_FOUND".into()),
                        ..RecordError::default()
                    }],
                    not_found: true,
                }))
            }
            Err(e @ Error::BackendRefused(_)) if e.party() == Party::Caller => {
                let Error::BackendRefused(r) = e else {
                    unreachable!()
                };
                let path = |f: &str| format!("{}[{index}]/{f}", ev.name);
                let errors = if r.fields.is_empty() {
                    vec![RecordError {
                        message: r.message.clone(),
                        path: Some(format!("{}[{index}]", ev.name)),
                        code: Some(r.code.to_ascii_uppercase()),
                        ..RecordError::default()
                    }]
                } else {
                    r.fields
                        .iter()
                        .map(|f| {
                            let name = flexi_name(ev, &f.field);
                            RecordError {
                                message: f.message.clone(),
                                value: rec
                                    .fields
                                    .iter()
                                    .find(|(k, _)| *k == name)
                                    .map(|(_, v)| v.text()),
                                path: Some(path(&name)),
                                for_: Some(name),
                                code: Some(if f.code.is_empty() {
                                    r.code.to_ascii_uppercase()
                                } else {
                                    f.code.to_ascii_uppercase()
                                }),
                            }
                        })
                        .collect()
                };
                Err(StepError::Record(RecordFailure {
                    errors,
                    not_found: false,
                }))
            }
            // Other mistakes in what the caller sent (an input too large for the backend).
            Err(e) if e.party() == Party::Caller => {
                Err(record_error(e.message(crate::error::Lang::En), e.code()).into())
            }
            Err(e) => Err(StepError::Backend(e)),
        }
    }
}

/// The one place a failure's HTTP status is chosen, from who is at fault: the caller's
/// mistakes (including what the backend refused of their input) are 4xx, a failing backend is
/// 502 (504 when it was too slow), the bridge's own trouble 500 (503 for its store).
fn status_of(e: &Error) -> StatusCode {
    match (e.party(), e) {
        (Party::Caller, Error::BackendRefused(r)) if r.status == 404 => StatusCode::NOT_FOUND,
        (Party::Caller, Error::BodyTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        (Party::Caller, Error::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
        (Party::Caller, Error::Unauthorized) => StatusCode::UNAUTHORIZED,
        (Party::Caller, _) => StatusCode::BAD_REQUEST,
        (_, Error::BackendTimeout { .. } | Error::RequestTimeout { .. }) => {
            StatusCode::GATEWAY_TIMEOUT
        }
        (Party::Backend, _) => StatusCode::BAD_GATEWAY,
        (Party::Bridge, Error::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
        (Party::Bridge, _) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failure of the whole request: its status from [`status_of`], and a message that says
/// whose it is (a backend's failure is prefixed, a refusal of the caller's input is not).
fn failure_of(e: &Error) -> Failure {
    failure(status_of(e), backend_message(e))
}

fn backend_message(e: &Error) -> String {
    match e.party() {
        Party::Caller => e.message(crate::error::Lang::En),
        Party::Backend => format!("Chyba backendu: {e}"),
        Party::Bridge => e.to_string(),
    }
}

fn not_found(ev: &Evidence, id: &str) -> String {
    format!("Nebyl nalezen zaznam s id = {id}: {}#{id} [{id}]", ev.class)
}

/// The backend's name of the `id` field.
fn id_backend(ev: &Evidence) -> &str {
    ev.fields
        .iter()
        .find(|f| f.name == "id")
        .map_or("id", |f| f.backend.as_str())
}

/// A backend field name (possibly with a sub-path like `components[0].item`) as Flexi's name.
fn flexi_name(ev: &Evidence, backend: &str) -> String {
    let head = backend.split(['.', '[']).next().unwrap_or(backend);
    ev.fields
        .iter()
        .find(|f| f.backend == head)
        .map_or_else(|| backend.to_string(), |f| f.name.clone())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A backend row as Flexi properties, in the evidence's field order; nulls left out.
fn row(ev: &Evidence, r: &Value) -> Vec<(String, String)> {
    ev.fields
        .iter()
        .filter_map(|f| match r.get(&f.backend) {
            None | Some(Value::Null) => None,
            Some(v) => Some((f.name.clone(), scalar(v))),
        })
        .collect()
}

/// Renames `field` members of a structured filter to the backend's names.
fn rename_fields(v: &mut Value, ev: &Evidence) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(f)) = m.get_mut("field")
                && let Some(def) = ev.fields.iter().find(|d| d.name == *f)
            {
                *f = def.backend.clone();
            }
            for (_, c) in m.iter_mut() {
                rename_fields(c, ev);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rename_fields(c, ev)),
        _ => {}
    }
}

/// A record's properties typed by the evidence and named as the backend names them.
fn typed_fields<'e, 'r>(
    ev: &'e Evidence,
    rec: &'r Record<'r>,
    index: usize,
) -> Result<Vec<(&'e str, Val<'r>)>, RecordFailure>
where
    'e: 'r,
{
    let mut out = Vec::with_capacity(rec.fields.len());
    let mut errors = Vec::new();
    for (name, raw) in &rec.fields {
        let Some(def) = ev.fields.iter().find(|f| f.name == *name) else {
            errors.push(RecordError {
                message: format!("Neznámá vlastnost '{name}' evidence '{}'.", ev.name),
                for_: Some(name.clone()),
                path: Some(format!("{}[{index}]/{name}", ev.name)),
                value: Some(raw.text()),
                code: Some("UNKNOWN_PROPERTY".into()),
            });
            continue;
        };
        if def.read_only || def.name == "id" {
            continue;
        }
        match typed(def.ty, raw) {
            Ok(v) => out.push((def.backend.as_str(), v)),
            Err(expected) => errors.push(RecordError {
                message: format!(
                    "Hodnota '{}' vlastnosti '{name}' není {expected}.",
                    raw.text()
                ),
                for_: Some(name.clone()),
                path: Some(format!("{}[{index}]/{name}", ev.name)),
                value: Some(raw.text()),
                code: Some("INVALID_VALUE".into()),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(RecordFailure {
            errors,
            not_found: false,
        })
    }
}

fn typed<'r>(ty: FieldType, raw: &'r RawValue<'r>) -> Result<Val<'r>, &'static str> {
    if *raw == RawValue::Null {
        return Ok(Val::Null);
    }
    let text: std::borrow::Cow<'r, str> = match raw {
        RawValue::Text(t) => std::borrow::Cow::Borrowed(t.as_ref()),
        RawValue::Number(n) => std::borrow::Cow::Borrowed(n.as_str()),
        RawValue::Bool(b) => std::borrow::Cow::Borrowed(if *b { "true" } else { "false" }),
        RawValue::Null => unreachable!(),
    };
    let t = text.trim();
    Ok(match ty {
        FieldType::String => Val::Str(text),
        FieldType::Int => Val::Int(t.parse().map_err(|_| "celé číslo")?),
        FieldType::Decimal => Val::Num(
            crate::protocol::xml::normalize_decimal(t)
                .ok_or("číslo")?
                .to_string()
                .into(),
        ),
        FieldType::Bool => Val::Bool(match t {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err("true nebo false"),
        }),
        FieldType::Date => {
            chrono::NaiveDate::parse_from_str(t.get(..10).unwrap_or(t), "%Y-%m-%d")
                .map_err(|_| "datum (RRRR-MM-DD)")?;
            Val::Str(t.to_string().into())
        }
    })
}
