//! HTTP for the winstrom door: URLs, reading lists and records, WQL filters as structured
//! filters, and the one place where answers, errors and their statuses are written ([`reply`],
//! [`status_of`]).

use std::time::Instant;

use http::{HeaderValue, Method, Request, StatusCode};
use serde_json::Value;

use super::session::SessionError;
use super::{Company, Evidence, WinstromDoor};
use crate::call::{Doc, Form, Tree, Val};
use crate::config::FieldType;
use crate::error::{Error, Party};
use crate::front::stream::{self, Began};
use crate::mapping::Lazy;
use crate::pipeline::Pipeline;
use crate::protocol::winstrom::{self, Format, PathError, Record, Reply, Target};
use crate::protocol::wql;
use crate::protocol::xml::Flush;
use crate::route::{Detached, Rows, Shaped};
use crate::server::{Body as Incoming, OutBody, Resp, text_response};
use crate::telemetry::{Calls, Outcome};

// ---- requests ------------------------------------------------------------------------------

/// A failure of a whole request, with its HTTP status, stable code and Flexi message.
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// For a 405: the methods the URL takes (default: all of them).
    pub(super) allow: Option<&'static str>,
    /// For a 429 or 503: when to try again, in seconds, where known.
    pub(super) retry_after_s: Option<u64>,
}

/// A failure the door finds itself; its code follows from its status.
pub(super) fn failure(status: StatusCode, message: impl Into<String>) -> Failure {
    let code = match status {
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::NOT_ACCEPTABLE => "NOT_ACCEPTABLE",
        _ => "BAD_REQUEST",
    };
    Failure {
        status,
        code,
        message: message.into(),
        allow: None,
        retry_after_s: None,
    }
}

/// Where an answer goes: its format, and the company and operation it is about (for the
/// record of the call: configured names, or `-`).
pub(super) struct Answer<'a> {
    format: Format,
    company: &'a str,
    operation: String,
    /// `no-http-errors=true`: every answer is 200; the body says whether it went well.
    no_http_errors: bool,
}

/// The only place answers are written: status, Flexi reply, format; and the record of the
/// call (a 4xx or 5xx is a failure, with its code).
fn reply(status: StatusCode, r: Reply, to: &Answer<'_>, code: &'static str) -> Resp {
    let outcome = if status.is_success() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let status = if to.no_http_errors {
        StatusCode::OK
    } else {
        status
    };
    let mut resp = text_response(
        status,
        to.format.content_type(),
        match r {
            // Records are written in the format asked for while they are read.
            Reply::Rows(written) => written,
            other => winstrom::encode(&other, to.format),
        },
    );
    Calls::one("winstrom", to.company, &to.operation, outcome, code).attach(&mut resp);
    resp
}

/// A list being sent while it is written: a success, whose body may yet break (`front::stream`).
fn sent(body: OutBody, to: &Answer<'_>) -> Resp {
    let mut resp = http::Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(to.format.content_type()),
    );
    Calls::one("winstrom", to.company, &to.operation, Outcome::Success, "").attach(&mut resp);
    resp
}

/// What a request comes to: a Flexi reply, or records sent while they are written.
pub(super) enum Done {
    Reply(Reply),
    Sending(OutBody),
}

fn fail_response(f: Failure, to: &Answer<'_>, challenge: Option<String>) -> Resp {
    let mut r = reply(f.status, Reply::Error { message: f.message }, to, f.code);
    if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    if f.status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static(f.allow.unwrap_or("GET, POST, PUT, DELETE")),
        );
    }
    if let Some(s) = f.retry_after_s {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Which properties of a record an answer gives (`detail=`).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) enum Detail {
    /// Every property (the default).
    #[default]
    Full,
    Id,
    /// The evidence's summary properties.
    Summary,
    /// The properties named (`custom:kod,nazev`), in the evidence's order.
    Custom(Vec<String>),
}

/// The query parameters of a winstrom URL. Parameters that would change an answer and are
/// not understood are refused, never ignored.
#[derive(Debug, Default)]
pub(super) struct Query {
    start: i64,
    limit: i64,
    row_count: bool,
    dry_run: bool,
    /// (property, descending), in order of precedence.
    order: Vec<(String, bool)>,
    detail: Detail,
}

/// The parameters [`parse_query`] knows, for its refusal of others.
const KNOWN_PARAMETERS: &str =
    "start, limit, add-row-count, order, detail, dry-run, no-http-errors, authSessionId, auth=http";

fn flag(v: &str) -> bool {
    matches!(v, "true" | "1" | "yes")
}

/// Whether the query asks for `no-http-errors` (read before anything can fail).
fn no_http_errors(q: Option<&str>) -> bool {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "no-http-errors" && (v.is_empty() || flag(&v)))
}

fn parse_query(q: Option<&str>) -> Result<Query, Failure> {
    let mut out = Query {
        limit: 20,
        ..Query::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let bad = |m: String| failure(StatusCode::BAD_REQUEST, m);
        // Given twice, which one was meant is not known (`order` adds keys instead).
        if matches!(
            &*k,
            "start" | "limit" | "add-row-count" | "dry-run" | "detail" | "no-http-errors"
        ) {
            if seen.iter().any(|s| *s == k) {
                return Err(bad(format!("Parametr '{k}' je uveden vícekrát.")));
            }
            seen.push(k.to_string());
        }
        let num = |v: &str| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                bad(format!(
                    "Parametr '{k}' musí být nezáporné celé číslo, ne '{}'.",
                    shown(v)
                ))
            })
        };
        let on = || match &*v {
            "" | "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(bad(format!(
                "Parametr '{k}' musí být true nebo false, ne '{}'.",
                shown(other)
            ))),
        };
        match &*k {
            "start" => out.start = num(&v)?,
            "limit" => out.limit = num(&v)?,
            "add-row-count" => out.row_count = on()?,
            "dry-run" => out.dry_run = on()?,
            // Read elsewhere, or changing nothing in an answer: how a client authenticates
            // (`auth=http`, as Basic is always accepted) and cache busters (`_=<time>`).
            "no-http-errors" => {
                on()?;
            }
            "authSessionId" | "_" => {}
            "auth" if matches!(&*v, "http" | "") => {}
            "order" => {
                for key in v.split(',').filter(|k| !k.is_empty()) {
                    let (name, dir) = key.rsplit_once('@').unwrap_or((key, "A"));
                    let desc = match dir {
                        "A" | "a" => false,
                        "D" | "d" => true,
                        _ => {
                            return Err(bad(format!(
                                "Parametr 'order': '{}' není řazení: použijte vlastnost@A (vzestupně) nebo vlastnost@D (sestupně).",
                                shown(key)
                            )));
                        }
                    };
                    out.order.push((name.to_string(), desc));
                }
            }
            "detail" => {
                out.detail = match &*v {
                    "full" => Detail::Full,
                    "id" => Detail::Id,
                    "summary" => Detail::Summary,
                    custom
                        if custom.starts_with("custom:")
                            && !custom.contains(['(', ')'])
                            && custom["custom:".len()..]
                                .split(',')
                                .any(|n| !n.trim().is_empty()) =>
                    {
                        Detail::Custom(
                            custom["custom:".len()..]
                                .split(',')
                                .map(str::trim)
                                .filter(|n| !n.is_empty())
                                .map(str::to_string)
                                .collect(),
                        )
                    }
                    other => {
                        return Err(bad(format!(
                            "Parametr 'detail': '{}' není podporován (id, summary, full, custom:vlastnost,...; bez vnořených vazeb).",
                            shown(other)
                        )));
                    }
                }
            }
            other => {
                return Err(bad(format!(
                    "Parametr '{}' tato služba nepodporuje (podporuje: {KNOWN_PARAMETERS}).",
                    shown(other)
                )));
            }
        }
    }
    Ok(out)
}

/// A value quoted in a message, cut short.
fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(64).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    s
}

impl Query {
    /// Checks the order and detail against the evidence; the order in the backend's names
    /// (`name`, `-sale_price`).
    fn for_evidence(&self, ev: &Evidence) -> Result<Vec<String>, Failure> {
        let field = |name: &str, what: &str| {
            ev.plan
                .fields
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = ev.plan.fields.iter().map(|f| f.name.as_str()).collect();
                    failure(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "Parametr '{what}': evidence '{}' nemá vlastnost '{}' (má: {}).",
                            ev.plan.name,
                            shown(name),
                            known.join(", ")
                        ),
                    )
                })
        };
        if let Detail::Custom(names) = &self.detail {
            for n in names {
                field(n, "detail")?;
            }
        }
        if !self.order.is_empty() && !ev.plan.sortable {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                format!(
                    "Parametr 'order': evidence '{}' řazení nepodporuje.",
                    ev.plan.name
                ),
            ));
        }
        self.order
            .iter()
            .map(|(name, desc)| {
                let f = field(name, "order")?;
                Ok(if *desc {
                    format!("-{}", f.backend)
                } else {
                    f.backend.clone()
                })
            })
            .collect()
    }
}

/// Answers one request under the winstrom prefix, or a login.
pub(crate) async fn handle(
    w: &WinstromDoor,
    p: &Pipeline,
    req: Request<Incoming>,
    started: Instant,
) -> Resp {
    let path = req.uri().path();
    if path.starts_with(super::LOGIN_PREFIX) || path.starts_with(super::USER_STATUS_PREFIX) {
        return login(w, p, req).await;
    }
    let rest = &path[w.prefix.len()..];
    let guess = if rest.ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    };
    let no_http_errors = no_http_errors(req.uri().query());
    let unknown = |format| Answer {
        format,
        company: "-",
        operation: "-".into(),
        no_http_errors,
    };
    let parts = match winstrom::parse_path(rest) {
        Ok(p) => p,
        Err(PathError::NotFound(m)) => {
            return fail_response(failure(StatusCode::NOT_FOUND, m), &unknown(guess), None);
        }
        Err(PathError::BadRequest(m)) => {
            return fail_response(failure(StatusCode::BAD_REQUEST, m), &unknown(guess), None);
        }
        Err(PathError::UnknownFormat(ext)) => {
            return fail_response(
                failure(
                    StatusCode::NOT_ACCEPTABLE,
                    format!("Formát '{ext}' není podporován: použijte .xml nebo .json."),
                ),
                &unknown(guess),
                None,
            );
        }
    };
    let format = parts.format;
    let Some(company) = w.companies.get(&parts.company) else {
        // Which companies exist is told only to a caller who is a user of one of them (the
        // challenge is the first company's by name, the same every time).
        let mut refused = None;
        let mut companies: Vec<(&String, &Company)> = w.companies.iter().collect();
        companies.sort_by_key(|(name, _)| *name);
        for (_, c) in companies {
            match authenticate(w, c, &req).await {
                Ok(_) => {
                    refused = None;
                    break;
                }
                Err(f) => {
                    refused.get_or_insert((f, c.profile.www_authenticate()));
                }
            }
        }
        if let Some((f, challenge)) = refused {
            return fail_response(f, &unknown(format), Some(challenge));
        }
        let m = format!("Firma '{}' neexistuje.", parts.company);
        return fail_response(failure(StatusCode::NOT_FOUND, m), &unknown(format), None);
    };
    let mut to = Answer {
        format,
        company: &parts.company,
        operation: "-".into(),
        no_http_errors,
    };
    let user = match authenticate(w, company, &req).await {
        Ok(u) => u,
        Err(f) => return fail_response(f, &to, Some(company.profile.www_authenticate())),
    };
    if let Err(e) = company.profile.admit(&user, w.clock.now_ms()) {
        return fail_response(failure_of(&e), &to, None);
    }
    let Some(ev) = company.evidences.get(&parts.evidence) else {
        let m = format!("Evidence '{}' neexistuje.", parts.evidence);
        return fail_response(failure(StatusCode::NOT_FOUND, m), &to, None);
    };
    let verb = match (req.method(), &parts.target) {
        (&Method::GET | &Method::HEAD, Target::All | Target::Filter(_)) => "list",
        (&Method::GET | &Method::HEAD, Target::Id(_)) => "get",
        (&Method::GET | &Method::HEAD, Target::Properties) => "properties",
        (&Method::POST | &Method::PUT, Target::Action { action, .. }) => action.as_str(),
        (&Method::POST | &Method::PUT, _) => "import",
        (&Method::DELETE, Target::Id(_)) => "delete",
        _ => "-",
    };
    // Configured names only (a bounded label): an unknown action is `-`.
    let verb = match &parts.target {
        Target::Action { .. } if !ev.actions.contains_key(verb) => "-",
        _ => verb,
    };
    to.operation = format!("{}.{verb}", ev.plan.name);
    let query = match parse_query(req.uri().query()) {
        Ok(q) => q,
        Err(f) => return fail_response(f, &to, None),
    };
    let order = match query.for_evidence(ev) {
        Ok(o) => o,
        Err(f) => return fail_response(f, &to, None),
    };
    let ctx = Ctx {
        w,
        company,
        company_name: &parts.company,
        user: &user,
        format,
        times: p.times(started),
    };
    let method = req.method().clone();
    let version = req.version();
    let target = parts.target.clone();
    let content_type =
        crate::server::header_str(&req, http::header::CONTENT_TYPE).map(str::to_string);
    // A GET's list may be sent while it is written (not to an HTTP/1.0 client, which has no
    // chunked framing to show a broken answer by).
    let sending =
        (method == Method::GET && version >= http::Version::HTTP_11).then_some((p, started));
    let work = async {
        let replied = match (&method, &target) {
            (&Method::GET | &Method::HEAD, Target::All) => {
                return ctx.list(ev, None, &query, &order, sending).await;
            }
            (&Method::GET | &Method::HEAD, Target::Filter(f)) => {
                return ctx.list(ev, Some(f), &query, &order, sending).await;
            }
            (&Method::GET | &Method::HEAD, Target::Id(id)) => ctx.get(ev, id, &query.detail).await,
            (&Method::GET | &Method::HEAD, Target::Properties) => {
                Ok((StatusCode::OK, properties(ev)))
            }
            (&Method::POST | &Method::PUT, Target::Action { id, action }) => {
                // The action's parameters, if any, are not read: the record is named by the URL.
                let rec = Record {
                    ids: vec![id.clone()],
                    action: Some(action.clone()),
                    ..Record::new(ev.plan.name.clone())
                };
                Ok(ctx.import(ev, vec![rec], true, None, query.dry_run).await)
            }
            (_, Target::Action { .. }) => Err(Failure {
                allow: Some("POST, PUT"),
                ..failure(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("Akci lze volat jen metodou POST nebo PUT, ne {method}."),
                )
            }),
            (_, Target::Properties) => Err(Failure {
                allow: Some("GET"),
                ..failure(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("Vlastnosti evidence lze jen číst (GET), ne {method}."),
                )
            }),
            (&Method::POST | &Method::PUT, _) => {
                let coding = req.headers().get(http::header::CONTENT_ENCODING).cloned();
                let (body, _held) = p
                    .read_body(req.into_body(), coding.as_ref())
                    .await
                    .map_err(|e| failure_of(&e))?;
                let text = crate::protocol::xml::decode_body(&body, content_type.as_deref())
                    .map_err(|e| failure_of(&e.into()))?;
                let doc = winstrom::decode_document(&text, p.max_depth(), w.max_records)
                    .map_err(|e| failure_of(&e.into()))?;
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
                    ids: vec![id.clone()],
                    action: Some("delete".into()),
                    ..Record::new(ev.plan.name.clone())
                };
                Ok(ctx.import(ev, vec![rec], true, None, query.dry_run).await)
            }
            _ => Err(failure(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Metoda {method} zde není povolena."),
            )),
        };
        replied.map(|(status, r)| (status, Done::Reply(r)))
    };
    let done = p.within_request_time(work).await;
    match done {
        Ok(Ok((_, Done::Sending(body)))) => sent(body, &to),
        Ok(Ok((status, Done::Reply(r)))) => {
            let code = if status.is_success() {
                ""
            } else {
                "IMPORT_FAILED"
            };
            reply(status, r, &to, code)
        }
        Ok(Err(f)) => fail_response(f, &to, None),
        Err(_) => fail_response(failure_of(&p.request_timed_out()), &to, None),
    }
}

/// What a session answer says when its store is down.
const STORE_DOWN: &str = "Přihlášení teď nelze ověřit (úložiště nedostupné); zkuste to později nebo použijte HTTP Basic.";

/// The caller of a request to `company`: a login session's user, or HTTP Basic.
async fn authenticate(
    w: &WinstromDoor,
    company: &Company,
    req: &Request<Incoming>,
) -> Result<String, Failure> {
    if let Some(id) = super::session::id_of(req) {
        return match w
            .sessions
            .user(&id, company.profile.name(), w.clock.now_ms())
            .await
        {
            Ok(Some(user)) => {
                crate::telemetry::set_user(&user);
                Ok(user)
            }
            Err(e) => {
                tracing::error!(error = ?e, "the session store failed");
                Err(failure(StatusCode::SERVICE_UNAVAILABLE, STORE_DOWN))
            }
            Ok(None) => Err(failure(
                StatusCode::UNAUTHORIZED,
                "Přihlášení (authSessionId) neplatí: vypršelo, bylo odhlášeno, nebo nepatří k této firmě. Přihlaste se znovu.",
            )),
        };
    }
    company
        .profile
        .authenticate(
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
        .map(str::to_string)
        .map_err(|_| {
            failure(
                StatusCode::UNAUTHORIZED,
                "Neplatné přihlašovací údaje: přihlaste se jménem a heslem uživatele firmy (HTTP Basic).",
            )
        })
}

/// `/login-logout/login.{json|xml}` (POST `{"username", "password"}` or a form): a session
/// for the companies whose users those are; `logout` (also `/status/user/{user}/logout`)
/// closes the session the request carries, `session-keep-alive.js` keeps it open.
async fn login(w: &WinstromDoor, p: &Pipeline, req: Request<Incoming>) -> Resp {
    let full = req.uri().path();
    let path = match full.strip_prefix(super::LOGIN_PREFIX) {
        Some(rest) => rest.to_string(),
        // `/status/user/{user}/logout.json`: the session names the user.
        None => full
            .rsplit_once('/')
            .map_or(String::new(), |(_, last)| last.to_string()),
    };
    let format = if path.ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    };
    let (stem, _) = path.rsplit_once('.').unwrap_or((&path, ""));
    let answer = |status: StatusCode, outcome: Result<Option<&str>, &str>, op: &str| {
        let mut resp = text_response(
            status,
            format.content_type(),
            winstrom::encode_login(outcome, format),
        );
        let (outcome, code) = match status.is_success() {
            true => (Outcome::Success, ""),
            false => (Outcome::Failure, "UNAUTHORIZED"),
        };
        Calls::one("winstrom", "-", op, outcome, code).attach(&mut resp);
        resp
    };
    match (req.method(), stem) {
        (&Method::POST, "login") => {
            let coding = req.headers().get(http::header::CONTENT_ENCODING).cloned();
            let (body, _held) = match p.read_body(req.into_body(), coding.as_ref()).await {
                Ok(b) => b,
                Err(e) => {
                    let m = backend_message(&e);
                    return answer(status_of(&e), Err(&m), "login");
                }
            };
            let Some((user, password)) = std::str::from_utf8(&body)
                .ok()
                .and_then(winstrom::decode_login)
            else {
                return answer(
                    StatusCode::BAD_REQUEST,
                    Err("Přihlášení potřebuje username a password (JSON nebo formulář)."),
                    "login",
                );
            };
            let header = crate::profile::basic_header(&user, &password);
            let mut profiles: Vec<String> = Vec::new();
            for c in w.companies.values() {
                let name = c.profile.name();
                if !profiles.iter().any(|p| p == name)
                    && c.profile.authenticate(Some(header.as_bytes())).is_ok()
                {
                    profiles.push(name.to_string());
                }
            }
            if profiles.is_empty() {
                return answer(
                    StatusCode::UNAUTHORIZED,
                    Err("Neplatné jméno nebo heslo."),
                    "login",
                );
            }
            crate::telemetry::set_user(&user);
            match w.sessions.open(&user, profiles, w.clock.now_ms()).await {
                Ok(id) => answer(StatusCode::OK, Ok(Some(&id)), "login"),
                Err(SessionError::Store(e)) => {
                    tracing::error!(error = %e, "the session store failed");
                    answer(StatusCode::SERVICE_UNAVAILABLE, Err(STORE_DOWN), "login")
                }
                Err(SessionError::Full) => answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Err(
                        "Příliš mnoho otevřených přihlášení; zkuste to později nebo použijte HTTP Basic.",
                    ),
                    "login",
                ),
                Err(SessionError::NoRandom) => answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Err("Přihlášení nelze vytvořit (systém nedal náhodná čísla)."),
                    "login",
                ),
            }
        }
        (&Method::POST | &Method::GET, "logout") => {
            let id = super::session::id_of(&req).unwrap_or_default();
            match w.sessions.close(&id).await {
                Ok(true) => answer(StatusCode::OK, Ok(None), "logout"),
                Ok(false) => answer(StatusCode::UNAUTHORIZED, Err("Nejste přihlášen."), "logout"),
                Err(e) => {
                    tracing::error!(error = ?e, "the session store failed");
                    answer(StatusCode::SERVICE_UNAVAILABLE, Err(STORE_DOWN), "logout")
                }
            }
        }
        (&Method::GET | &Method::POST, "session-keep-alive") => {
            let id = super::session::id_of(&req).unwrap_or_default();
            match w.sessions.keep_alive(&id, w.clock.now_ms()).await {
                Ok(true) => answer(StatusCode::OK, Ok(None), "keep-alive"),
                Ok(false) => answer(
                    StatusCode::UNAUTHORIZED,
                    Err("Přihlášení vypršelo."),
                    "keep-alive",
                ),
                Err(e) => {
                    tracing::error!(error = ?e, "the session store failed");
                    answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Err(STORE_DOWN),
                        "keep-alive",
                    )
                }
            }
        }
        (_, name @ ("login" | "logout" | "session-keep-alive")) => {
            let (allow, says) = if name == "login" {
                ("POST", "Přihlášení se posílá metodou POST.")
            } else {
                ("GET, POST", "Zde lze jen GET nebo POST.")
            };
            let mut r = answer(StatusCode::METHOD_NOT_ALLOWED, Err(says), "-");
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            Err("Neznámá cesta: /login-logout/login.json, logout.json, session-keep-alive.js."),
            "-",
        ),
    }
}

/// `properties.json`: the evidence's configured properties.
fn properties(ev: &Evidence) -> Reply {
    let writable = ev.create.is_some() || ev.update.is_some();
    Reply::Properties {
        evidence: ev.plan.name.clone(),
        properties: ev
            .plan
            .fields
            .iter()
            .map(|f| winstrom::Property {
                name: f.name.clone(),
                title: f.title.clone(),
                ty: match f.ty {
                    crate::config::raw::FieldType::String => "string",
                    crate::config::raw::FieldType::Int => "integer",
                    crate::config::raw::FieldType::Decimal => "numeric",
                    crate::config::raw::FieldType::Bool => "logic",
                    crate::config::raw::FieldType::Date => "date",
                },
                writable: writable && !f.read_only,
                sortable: ev.plan.sortable,
                filterable: !f.ops.is_empty(),
                in_summary: ev.plan.summary.contains(&f.name),
            })
            .collect(),
    }
}

pub(super) struct Ctx<'a> {
    pub(super) w: &'a WinstromDoor,
    pub(super) company: &'a Company,
    pub(super) company_name: &'a str,
    pub(super) user: &'a str,
    pub(super) format: Format,
    /// No record is started after `stop_starting`: the rest are reported skipped; one whose
    /// backend has not answered at `cut_off` fails. Both before the whole request's time limit
    /// would cut the answer off.
    pub(super) times: crate::route::Times,
}

impl<'a> Ctx<'a> {
    pub(super) fn reference(&self, ev: &str, id: &str) -> String {
        let mut r = format!("{}/{}/{ev}/", self.w.prefix, self.company_name);
        crate::percent::encode_into(&mut r, id);
        r.push('.');
        r.push_str(self.format.ext());
        r
    }

    pub(super) fn input<'v>(&'v self, members: Vec<(&'v str, Val<'v>)>) -> Val<'v> {
        let mut m = vec![("tenant", Val::Str(self.company.tenant.as_str().into()))];
        m.extend(members);
        Val::Obj(m)
    }

    /// A WQL filter as the backend's structured filter (field names translated), or the
    /// reason it cannot be sent.
    pub(super) fn filter_json(&self, ev: &Evidence, text: &str) -> Result<Value, Failure> {
        let f = wql::parse_with(text, &self.w.filter_limits)
            .map_err(|e| failure(StatusCode::BAD_REQUEST, e.to_string()))?;
        for (field, op) in wql::operators_used(&f) {
            let Some(def) = ev.plan.fields.iter().find(|d| d.name == field) else {
                let known: Vec<&str> = ev
                    .plan
                    .fields
                    .iter()
                    .filter(|d| !d.ops.is_empty())
                    .map(|d| d.name.as_str())
                    .collect();
                return Err(failure(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Filtr nelze použít: podle vlastnosti '{field}' evidence '{}' nelze filtrovat (lze podle: {}).",
                        ev.plan.name,
                        known.join(", ")
                    ),
                ));
            };
            if !def.ops.contains(&op) {
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
        // A number property compared with what is no number is the caller's mistake, said in
        // Flexi's terms before the backend is asked (whose refusal would name its own fields).
        for c in wql::comparisons(&f) {
            let Some(def) = ev.plan.fields.iter().find(|d| d.name == c.field) else {
                continue;
            };
            if let Some(v) = wql::values(&c.test).find(|v| !fits_number(def.ty, v)) {
                let shown = match v {
                    wql::Value::Str(s) => format!("'{}'", s.chars().take(64).collect::<String>()),
                    wql::Value::Bool(b) => b.to_string(),
                    wql::Value::Func(f) => f.wql().to_string(),
                    wql::Value::Number(n) => n.clone(),
                };
                let kind = if def.ty == FieldType::Int {
                    "celé číslo"
                } else {
                    "číslo"
                };
                return Err(failure(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Filtr nelze použít: vlastnost '{}' je {kind}, {shown} není {kind}.",
                        c.field
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

    /// Records of `ev`, all or those `filter` picks, as `q` asks. With `sending` (the
    /// pipeline and when the request started), a list whose backend answer is
    /// `server.stream_answers_from_bytes` or more is sent while it is written.
    pub(super) async fn list(
        &self,
        ev: &Evidence,
        filter: Option<&str>,
        q: &Query,
        order: &[String],
        sending: Option<(&Pipeline, Instant)>,
    ) -> Result<(StatusCode, Done), Failure> {
        let filter = match filter {
            Some(t) => self.filter_json(ev, t)?,
            None => Value::Null,
        };
        let input = self.search_input(&filter, q.start, q.limit, q.row_count, order);
        let list = ListWriter {
            format: self.format,
            evidence: ev.plan.name.clone(),
            columns: columns(ev, &q.detail)
                .into_iter()
                .map(|(name, backend)| (name.to_string(), backend.to_string()))
                .collect(),
            row_count: q.row_count,
        };
        // The records are written from the backend's answer read in place, as they are read:
        // a long list is not copied into records first (BENCHMARKS.md, winstrom lists).
        let detach_from = sending.and_then(|(p, _)| p.stream_answers_from());
        let ok = |written| Ok((StatusCode::OK, Done::Reply(Reply::Rows(written))));
        let d = match ev.list.answer(&input, list.whole(), detach_from).await {
            Ok(Shaped::Now(written)) => return ok(written),
            Ok(Shaped::Detached(d)) => d,
            Err(e) => return Err(failure_of(&e)),
        };
        let whole = |d: Detached| {
            list.write_answer(d, None)
                .map_or_else(|e| Err(failure_of(&e)), ok)
        };
        // Detached only when it may be sent while it is written (`sending`).
        let Some((p, started)) = sending else {
            return whole(d);
        };
        let writer = list.clone();
        let write = move |answer: Detached, flush: &mut Flush<'_>, at: usize| {
            writer.write_answer(answer, Some((flush, at)))
        };
        let what = format!("{}.list", ev.plan.name);
        match stream::stream_answer(p, started, d, what, write).await {
            Ok(Began::Streaming(body)) => Ok((StatusCode::OK, Done::Sending(body))),
            Ok(Began::Ended(written)) => written.map_or_else(|e| Err(failure_of(&e)), ok),
            // As many answers as may be are being streamed: this one is written whole.
            Err(d) => whole(d),
        }
    }

    /// The input of an evidence's list route.
    fn search_input<'v>(
        &'v self,
        filter: &'v Value,
        start: i64,
        limit: i64,
        count: bool,
        order: &'v [String],
    ) -> Val<'v> {
        let mut members = vec![
            ("filter", Val::borrowed(filter)),
            ("start", Val::Int(start)),
            ("limit", Val::Int(limit)),
            ("count", Val::Bool(count)),
        ];
        // Absent, not null, when the caller gave none: the backend's own order applies.
        if !order.is_empty() {
            let keys = order.iter().map(|k| Val::Str(k.as_str().into())).collect();
            members.push(("order", Val::List(keys)));
        }
        self.input(members)
    }

    pub(super) async fn search(
        &self,
        ev: &Evidence,
        filter: &Value,
        start: i64,
        limit: i64,
        count: bool,
        order: &[String],
    ) -> Result<(Vec<Value>, Option<u64>), Error> {
        let input = self.search_input(filter, start, limit, count, order);
        let mut result = ev.list.invoke(&input).await?;
        let rows = match result.get_mut("rows").map(Value::take) {
            Some(Value::Array(rows)) => rows,
            _ => Vec::new(),
        };
        Ok((rows, result.get("total").and_then(Value::as_u64)))
    }

    pub(super) async fn get(
        &self,
        ev: &Evidence,
        id: &str,
        detail: &Detail,
    ) -> Result<(StatusCode, Reply), Failure> {
        let result = match &ev.get {
            Some(route) => route
                .invoke(&self.input(vec![("id", Val::Str(id.into()))]))
                .await
                .map(|r| r.get("row").cloned()),
            None => {
                return Err(failure(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!(
                        "Evidence '{}' neumožňuje číst jednotlivé záznamy.",
                        ev.plan.name
                    ),
                ));
            }
        };
        match result {
            Ok(Some(r)) if !r.is_null() => {
                let rows = Value::Array(vec![r]);
                let written = winstrom::write_rows(
                    self.format,
                    &ev.plan.name,
                    &columns(ev, detail),
                    Some(Doc::Json(&rows)),
                    None,
                    0,
                    None,
                );
                Ok((StatusCode::OK, Reply::Rows(written)))
            }
            Ok(_) => Err(failure(StatusCode::NOT_FOUND, not_found(ev, id))),
            Err(Error::BackendRefused(r)) if r.status == 404 => {
                Err(failure(StatusCode::NOT_FOUND, not_found(ev, id)))
            }
            Err(e) => Err(failure_of(&e)),
        }
    }
}

/// The one place a failure's HTTP status is chosen, from who is at fault: the caller's
/// mistakes (including what the backend refused of their input) are 4xx, a failing backend is
/// 502 (504 when it was too slow), the bridge's own trouble 500 (503 for its store).
pub(super) fn status_of(e: &Error) -> StatusCode {
    match (e.party(), e) {
        (Party::Caller, Error::BackendRefused(r)) if r.status == 404 => StatusCode::NOT_FOUND,
        (Party::Caller, Error::BodyTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        (Party::Caller, Error::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
        (Party::Caller, Error::UnsupportedContentEncoding(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        (Party::Caller, Error::Unauthorized) => StatusCode::UNAUTHORIZED,
        (Party::Caller, Error::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
        (Party::Caller, _) => StatusCode::BAD_REQUEST,
        (_, Error::BackendTimeout { .. } | Error::RequestTimeout { .. } | Error::CutOff { .. }) => {
            StatusCode::GATEWAY_TIMEOUT
        }
        (_, Error::BackendCircuitOpen { .. } | Error::BackendBusy { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        (Party::Backend, _) => StatusCode::BAD_GATEWAY,
        (Party::Bridge, Error::Store(_) | Error::BodiesInFlight { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        (Party::Bridge, _) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failure of the whole request: its status from [`status_of`], and a message that says
/// whose it is (a backend's failure is prefixed, a refusal of the caller's input is not).
pub(super) fn failure_of(e: &Error) -> Failure {
    Failure {
        status: status_of(e),
        code: e.code(),
        message: backend_message(e),
        allow: None,
        retry_after_s: e.retry_after_s(),
    }
}

/// Whether a filter's value `v` can be compared with a property of type `ty` (only number
/// properties are checked: a string of digits is a number, as Flexi takes `'10'`; an integer
/// property may be a relation, named by a record identifier such as `'code:CZK'`).
fn fits_number(ty: FieldType, v: &wql::Value) -> bool {
    let number = |t: &str| match ty {
        FieldType::Int => {
            t.trim().parse::<i64>().is_ok()
                || (t.contains(':') && winstrom::check_id(t.trim()).is_ok())
        }
        _ => t.trim().parse::<f64>().is_ok_and(f64::is_finite),
    };
    match (ty, v) {
        (FieldType::Int | FieldType::Decimal, wql::Value::Number(n) | wql::Value::Str(n)) => {
            number(n)
        }
        (FieldType::Int | FieldType::Decimal, wql::Value::Func(wql::Func::CurrentYear)) => true,
        (FieldType::Int | FieldType::Decimal, _) => false,
        _ => true,
    }
}

pub(super) fn backend_message(e: &Error) -> String {
    match e.party() {
        Party::Caller => e.message(crate::error::Lang::En),
        Party::Backend => format!("Chyba backendu: {e}"),
        Party::Bridge => e.to_string(),
    }
}

pub(super) fn not_found(ev: &Evidence, id: &str) -> String {
    format!(
        "Nebyl nalezen zaznam s id = {id}: {}#{id} [{id}]",
        ev.plan.class
    )
}

/// The backend's name of the `id` field.
pub(super) fn id_backend(ev: &Evidence) -> &str {
    ev.plan
        .fields
        .iter()
        .find(|f| f.name == "id")
        .map_or("id", |f| f.backend.as_str())
}

pub(super) fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// How a list's records are written: from the list route's result (`rows`, and `total` for
/// the row count), in the format asked for, with the properties asked for.
#[derive(Clone)]
struct ListWriter {
    format: Format,
    evidence: String,
    /// (Flexi name, the backend's name) of each property written.
    columns: Vec<(String, String)>,
    row_count: bool,
}

impl ListWriter {
    /// The writer of the whole list, for an answer written before it is sent.
    fn whole(&self) -> impl FnOnce(Lazy<'_>, usize) -> String + '_ {
        move |result, size| self.write(result, size, None)
    }

    fn write(
        &self,
        result: Lazy<'_>,
        size: usize,
        flush: Option<(&mut Flush<'_>, usize)>,
    ) -> String {
        let rows = result.member("rows");
        let listed = match rows.map(Tree::form) {
            Some(Form::List(n)) => n,
            _ => 0,
        };
        let count = self.count(result.member("total"), listed);
        let columns = self.columns();
        winstrom::write_rows(
            self.format,
            &self.evidence,
            &columns,
            rows,
            count,
            size,
            flush,
        )
    }

    /// A large list (an answer handed back unshaped): its rows read from the backend's answer
    /// one at a time, so that they are never all held as values, when the list route's
    /// mapping takes them as a path into the answer (`rows = "$.items"`, as the demo's);
    /// otherwise the whole answer shaped ([`Detached::read_list`]).
    fn write_answer(
        &self,
        answer: Detached,
        mut flush: Option<(&mut Flush<'_>, usize)>,
    ) -> Result<String, Error> {
        let columns = self.columns();
        let read = |rows: &Rows<'_>, beside: &[Option<Val<'_>>], size: usize| {
            let given = beside.first().and_then(|t| t.as_ref()).map(Doc::Call);
            let count = self.count(given, rows.len());
            let mut records = winstrom::Records::begin(
                self.format,
                &self.evidence,
                &columns,
                count,
                size,
                flush.take(),
            );
            rows.each(|row| records.record(Doc::Call(row)))?;
            Ok(records.end())
        };
        // The backend's total is read only for a row count.
        let beside: &[&str] = if self.row_count { &["total"] } else { &[] };
        match answer.read_list("rows", beside, read) {
            Ok(written) => written,
            Err(answer) => answer.answer(|result, size| self.write(result, size, flush)),
        }
    }

    /// The row count, when the list asks for one: the backend's `total` (an integer of at
    /// least 0), else the rows it answered.
    fn count<'t, T: Tree<'t>>(&self, total: Option<T>, rows: usize) -> Option<u64> {
        let total = total.and_then(|t| match t.form() {
            Form::Scalar(Val::Int(n)) => u64::try_from(n).ok(),
            _ => None,
        });
        self.row_count.then(|| total.unwrap_or(rows as u64))
    }

    /// (Flexi name, the backend's name) of each property written.
    fn columns(&self) -> Vec<winstrom::Column<'_>> {
        self.columns
            .iter()
            .map(|(name, backend)| (name.as_str(), backend.as_str()))
            .collect()
    }
}

/// The properties of an evidence's records that `detail` asks for, in its field order: (Flexi
/// name, the backend's name).
fn columns<'e>(ev: &'e Evidence, detail: &Detail) -> Vec<winstrom::Column<'e>> {
    ev.plan
        .fields
        .iter()
        .filter(|f| match detail {
            Detail::Full => true,
            Detail::Id => f.name == "id",
            Detail::Summary => ev.plan.summary.contains(&f.name),
            Detail::Custom(names) => names.contains(&f.name),
        })
        .map(|f| (f.name.as_str(), f.backend.as_str()))
        .collect()
}

/// Renames `field` members of a structured filter to the backend's names.
fn rename_fields(v: &mut Value, ev: &Evidence) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(f)) = m.get_mut("field")
                && let Some(def) = ev.plan.fields.iter().find(|d| d.name == *f)
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
