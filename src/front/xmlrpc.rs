//! The XML-RPC front door (`[xmlrpc] path`, `/RPC2` by default): every operation of every
//! service as `<service>.<operation>`, plus `system.listMethods`, `system.methodSignature`,
//! `system.methodHelp` and `system.multicall`.
//!
//! A call goes through the same pipeline as SOAP: the called service's HTTP Basic check, the
//! parameters converted by the operation's schema into the neutral call, [`Pipeline::begin`]
//! and [`Pipeline::finish`], the result written typed by the output schema. A call made alone
//! lets its request body go between the two when nothing more of it is needed, as the SOAP
//! door does. A multicall's calls are made by a task of their own, which sends the answer in
//! pieces as it grows ([`multicall`]). Every failure is a fault with HTTP 200; its code and
//! text are chosen only in [`fault_of`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::server::Body as Incoming;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use serde_json::Value;
use tracing::Instrument;

use crate::call::Val;
use crate::config::{I8Policy, XmlRpcPlan};
use crate::error::{Error, Lang};
use crate::mapping::Lazy;
use crate::pipeline::{Begun, Pipeline};
use crate::profile::signed::Stamped;
use crate::protocol::xml::{Flush, ShapeError};
use crate::protocol::xmlrpc::{
    self, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, MethodCall,
    PARSE_ERROR, ValueWriter, XVal,
};
use crate::route::Shaped;
use crate::schema::Schema;
use crate::server::{Held, OutBody, Resp, header_str, text_response};
use crate::service::Service;
use crate::telemetry::{Answered, CallInfo, Calls, Outcome};

use super::stream::{self, Began};

const CONTENT_TYPE: &str = "text/xml; charset=utf-8";
/// Calls in one `system.multicall` at most.
const MAX_MULTICALL: usize = 1000;
const SYSTEM_METHODS: [&str; 4] = [
    "system.listMethods",
    "system.methodSignature",
    "system.methodHelp",
    "system.multicall",
];

/// The XML-RPC door: its path, its `i8` policy, and every service by name.
#[derive(Debug)]
pub(crate) struct XmlRpcDoor {
    pub path: String,
    i8: I8Policy,
    /// Sorted by path, as `system.listMethods` lists them.
    services: Vec<Arc<Service>>,
}

impl XmlRpcDoor {
    pub(crate) fn new(plan: &XmlRpcPlan, services: &[Arc<Service>]) -> XmlRpcDoor {
        XmlRpcDoor {
            path: plan.path.clone(),
            i8: plan.i8,
            services: services.to_vec(),
        }
    }

    fn service_named(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The door and the pipeline, for one request.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    door: &'a XmlRpcDoor,
    p: &'a Pipeline,
}

pub(crate) async fn handle(
    door: &Arc<XmlRpcDoor>,
    p: &Arc<Pipeline>,
    req: Request<Incoming>,
    started: Instant,
) -> Resp {
    let app = Ctx { door, p };
    if req.method() != Method::POST {
        let mut r = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "XML-RPC endpoint: POST a <methodCall> here (system.listMethods lists the methods)\n",
        );
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let policy = door.i8;
    let python = header_str(&req, http::header::USER_AGENT)
        .is_some_and(|ua| ua.starts_with("Python-xmlrpc"));
    let ct = header_str(&req, http::header::CONTENT_TYPE).map(str::to_string);
    // An HTTP/1.0 client has no chunked framing: a result sent while it is written would end
    // where the connection closes, so a broken one would look whole. Its results are whole.
    let may_stream = req.version() >= http::Version::HTTP_11;
    let (parts, body) = req.into_parts();
    let answer = p
        .within_request_time(async {
            let coding = parts.headers.get(http::header::CONTENT_ENCODING);
            let (body, held) = p.read_body(body, coding).await?;
            let text = crate::protocol::xml::decode_body(&body, ct.as_deref())?;
            let call = xmlrpc::decode_call(&text, p.max_depth())?;
            let i8_ok = match policy {
                I8Policy::Always => true,
                I8Policy::Never => false,
                I8Policy::Auto => call.uses_i8 || python,
            };
            let mut calls = Vec::new();
            let how = One {
                i8_ok,
                started,
                may_stream,
            };
            let headers = &parts.headers;
            let xml = match alone(app, headers, call, &mut calls).await {
                Alone::Not(call) if call.name == "system.multicall" => {
                    match multicall_calls(call.params) {
                        Ok(entries) => {
                            // Its calls are made by a task of their own, free of the request.
                            let entries = entries.into_iter().map(XVal::into_owned).collect();
                            drop(text);
                            drop(body);
                            Replying::Multicall(multicall(Multicall {
                                door: door.clone(),
                                p: p.clone(),
                                headers: headers.clone(),
                                path: parts.uri.path().to_string(),
                                calls: entries,
                                how,
                                held,
                            }))
                        }
                        Err(fault) => Replying::Whole(fault),
                    }
                }
                Alone::Not(call) => Replying::Whole(response_of(
                    one(app, headers, &call.name, call.params, how, &mut calls).await,
                )),
                Alone::Answered(answer) => Replying::Whole(response_of(answer)),
                Alone::Begun(Started {
                    svc,
                    op,
                    lang,
                    begun,
                }) => {
                    let begun = match begun {
                        Begun::Rendered(r) => {
                            // Nothing of the request is needed any more: its body, most of a
                            // large call's memory, goes before the backend is called rather
                            // than after it answers (as the SOAP door does).
                            drop(text);
                            drop(body);
                            Begun::Rendered(r)
                        }
                        other => other,
                    };
                    let done = call_finish(app, svc, op, begun, lang, how).await;
                    Replying::Whole(response_of(record(svc, op, done, &mut calls)))
                }
            };
            Ok::<_, Error>((xml, calls))
        })
        .await
        .unwrap_or_else(|_| Err(p.request_timed_out()));
    let failure = |e: &Error| {
        let (code, text) = fault_of(None, e, Lang::En);
        OutBody::from(Bytes::from(xmlrpc::fault(code, &text)))
    };
    let (body, calls) = match answer {
        Ok((Replying::Whole(body), calls)) => (body, calls),
        // A multicall's task records its calls itself; it ends by the request's deadline.
        Ok((Replying::Multicall(opening), calls)) => match opening.began().await {
            Began::Streaming(body) => (body, calls),
            Began::Ended(Ok(xml)) => (OutBody::from(Bytes::from(xml)), calls),
            Began::Ended(Err(e)) => (failure(&e), vec![info("-", "-", Err(&e))]),
        },
        Err(e) => (failure(&e), vec![info("-", "-", Err(&e))]),
    };
    let mut r = http::Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    Calls(calls).attach(&mut r);
    r
}

/// What one call came to, for its record: `Err` with the error that ended it.
fn info(service: &str, operation: &str, result: Result<(), &Error>) -> CallInfo {
    let (outcome, code) = match result {
        Ok(()) => (Outcome::Success, ""),
        Err(e) => (Outcome::Fault, e.code()),
    };
    CallInfo {
        door: "xmlrpc",
        service: service.to_string(),
        operation: operation.to_string(),
        outcome,
        code,
    }
}

/// A method's answer: its result, or a fault's code and text.
type Answer = Result<Reply, (i32, String)>;

/// A method's result: a `<value>`, or (for a large one, outside a multicall) the whole
/// `methodResponse`, sent while it is written ([`stream`]) or written whole by its writer.
enum Reply {
    Value(String),
    Message(OutBody),
}

/// The `<value>` of a result inside a multicall, where results are never streamed.
fn value_in_multicall(a: Answer) -> Result<String, (i32, String)> {
    match a? {
        Reply::Value(v) => Ok(v),
        Reply::Message(_) => Err((
            INTERNAL_ERROR,
            "a result that cannot be part of a multicall".into(),
        )),
    }
}

/// How a request is answered: a whole message, or a multicall's, whose calls a task makes.
enum Replying {
    Whole(OutBody),
    Multicall(stream::Opening),
}

/// The entries of a `system.multicall`'s one parameter (an array), or the fault that answers
/// it.
fn multicall_calls(params: Vec<XVal<'_>>) -> Result<Vec<XVal<'_>>, OutBody> {
    let fault = |text: &str| OutBody::from(Bytes::from(xmlrpc::fault(INVALID_PARAMS, text)));
    match <[XVal<'_>; 1]>::try_from(params).map(|[c]| c.into_array()) {
        Ok(Ok(calls)) if calls.len() > MAX_MULTICALL => Err(fault(&format!(
            "system.multicall takes at most {MAX_MULTICALL} calls; send more requests"
        ))),
        Ok(Ok(calls)) => Ok(calls),
        _ => Err(fault(
            "system.multicall takes one parameter: an array of structs {methodName, params}",
        )),
    }
}

/// A multicall, taken out of its request for the task that makes its calls ([`multicall`]).
struct Multicall {
    door: Arc<XmlRpcDoor>,
    p: Arc<Pipeline>,
    headers: HeaderMap,
    /// The request's path, for the calls' log lines.
    path: String,
    calls: Vec<XVal<'static>>,
    how: One,
    /// The request body's place in `max_body_bytes_in_flight`, which the calls' values now
    /// take: given back when the last call has ended.
    held: Held,
}

/// Makes a multicall's calls one after another in a task of its own, so that its answer is
/// sent while they are made: once the answers written reach a piece ([`stream::PIECE`]) they
/// go to the client (unless streaming is off, `server.stream_answers_from_bytes = 0`, or the
/// client speaks HTTP/1.0, which has no chunked framing: then its answer is written whole). The
/// task records the calls it made. Once no one reads the answer (the client went away or reads
/// too slowly), the call in flight is given up and no further call is made.
fn multicall(m: Multicall) -> stream::Opening {
    let (mut pieces, opening) = stream::pieces(m.p.request_deadline(m.how.started));
    let context = crate::telemetry::current_request();
    let work = async move {
        let Multicall {
            door,
            p,
            headers,
            path,
            calls,
            how,
            held,
        } = m;
        let app = Ctx { door: &door, p: &p };
        let mut calls_made = Vec::new();
        let answers = make_calls(app, &headers, calls, how, &mut calls_made, &mut pieces).await;
        drop(held);
        let id = crate::telemetry::request_id();
        let answered = Answered {
            method: &Method::POST,
            path: &path,
            status: StatusCode::OK.as_u16(),
            elapsed: how.started.elapsed(),
            request_id: id.as_deref().unwrap_or("-"),
        };
        p.telemetry().calls_answered(&calls_made, &answered);
        if let Some(end) = pieces.end(Ok(answers.finish()), "system.multicall").await {
            p.telemetry().streamed_answer(end);
        }
    };
    // The context carries the request's times, by which its calls' routes pace their own
    // backend calls (a batch's chunks).
    let work = work.instrument(tracing::Span::current());
    tokio::spawn(crate::telemetry::within_request_async(context, work));
    opening
}

/// A multicall's calls, each answered in order with [result] or a fault struct (those made
/// until no one reads the answer any more).
///
/// What was done must reach the client even when the request's time runs out: no call is
/// started after 80% of it (each later one is answered "not called"), and a call whose backend
/// has not answered at 95% of it is given up with a fault of its own, so that the answers of the
/// calls before it are sent in time.
async fn make_calls(
    app: Ctx<'_>,
    headers: &HeaderMap,
    calls: Vec<XVal<'_>>,
    how: One,
    calls_made: &mut Vec<CallInfo>,
    pieces: &mut stream::Pieces,
) -> xmlrpc::MulticallResponse {
    let in_multicall = One {
        may_stream: false,
        ..how
    };
    let streaming = how.may_stream && app.p.stream_answers_from().is_some();
    let times = app.p.times(how.started);
    let of = calls.len();
    let mut out_of_time = false;
    let mut answers = xmlrpc::MulticallResponse::new();
    for (i, c) in calls.into_iter().enumerate() {
        if pieces.unread() {
            // No one reads the answers: the calls left are not made.
            break;
        }
        let answer = match multicall_entry(c) {
            Ok((name, _)) if name == "system.multicall" => Err((
                INVALID_REQUEST,
                "system.multicall cannot be called inside system.multicall".to_string(),
            )),
            Ok((name, _)) if out_of_time || Instant::now() >= times.stop_starting => {
                out_of_time = true;
                let e = Error::NotCalled {
                    n: i + 1,
                    of,
                    limit_ms: times.limit_ms,
                };
                Err(not_made(app, &name, calls_made, e))
            }
            Ok((name, params)) => {
                let call = one(app, headers, &name, params, in_multicall, calls_made);
                let answered = tokio::select! {
                    answered = tokio::time::timeout_at(times.cut_off.into(), call) => answered,
                    () = pieces.until_unread() => {
                        // It may have reached its backend: say so, since no answer will.
                        let (service, operation) = find(app, &name).map_or(("-", "-"), |(s, o)| {
                            (s.name.as_str(), s.desc.operations[o].name.as_str())
                        });
                        tracing::warn!(
                            service,
                            operation,
                            call = i + 1,
                            of,
                            "a multicall's client went away: its call in flight was given up (the backend may or may not have done it), the calls after it not made"
                        );
                        break;
                    }
                };
                match answered {
                    Ok(answer) => value_in_multicall(answer),
                    Err(_) => {
                        out_of_time = true;
                        let e = Error::CutOff {
                            limit_ms: times.limit_ms,
                        };
                        Err(not_made(app, &name, calls_made, e))
                    }
                }
            }
            Err(reason) => Err((INVALID_REQUEST, format!("multicall entry {i}: {reason}"))),
        };
        answers.push(answer);
        if streaming && answers.len() >= stream::PIECE {
            pieces.piece(answers.take(stream::PIECE_ROOM)).await;
        }
    }
    answers
}

/// The fault of a multicall's call `name` that `e` kept from being made or answered; its record
/// goes to `calls_made`.
fn not_made(app: Ctx<'_>, name: &str, calls_made: &mut Vec<CallInfo>, e: Error) -> (i32, String) {
    match find(app, name) {
        Ok((svc, op)) => failed(svc, op, (e, Lang::En), calls_made),
        Err(_) => {
            calls_made.push(info("-", "-", Err(&e)));
            fault_of(None, &e, Lang::En)
        }
    }
}

/// The `methodResponse` of a call made alone: its result, or its fault.
fn response_of(answer: Answer) -> OutBody {
    let whole = |xml: String| OutBody::from(Bytes::from(xml));
    match answer {
        Ok(Reply::Value(v)) => whole(xmlrpc::response(&v)),
        Ok(Reply::Message(body)) => body,
        Err((code, text)) => whole(xmlrpc::fault(code, &text)),
    }
}

/// A call made alone (not a multicall, not a system method), up to its backend request: the
/// door can then let the request go before the backend is called, when nothing more of it is
/// needed ([`Begun::Rendered`]).
enum Alone<'t, 'a> {
    /// A multicall or a system method, as it came.
    Not(MethodCall<'t>),
    /// It failed before its backend was called.
    Answered(Answer),
    Begun(Started<'t, 'a>),
}

async fn alone<'t, 'a: 't>(
    app: Ctx<'a>,
    headers: &HeaderMap,
    call: MethodCall<'t>,
    calls_made: &mut Vec<CallInfo>,
) -> Alone<'t, 'a> {
    if call.name.starts_with("system.") {
        return Alone::Not(call);
    }
    match start(app, headers, &call.name, call.params, calls_made).await {
        Ok(started) => Alone::Begun(started),
        Err(fault) => Alone::Answered(Err(fault)),
    }
}

/// A service's method, begun: its operation and the caller's language with the pipeline's
/// first half ([`call_begin`]).
struct Started<'t, 'a: 't> {
    svc: &'a Arc<Service>,
    op: usize,
    lang: Lang,
    begun: Begun<'t>,
}

/// Finds the method `name` and begins its call; a failure so far is its fault (recorded).
async fn start<'t, 'a: 't>(
    app: Ctx<'a>,
    headers: &HeaderMap,
    name: &str,
    params: Vec<XVal<'t>>,
    calls_made: &mut Vec<CallInfo>,
) -> Result<Started<'t, 'a>, (i32, String)> {
    let (svc, op) = find(app, name).map_err(|e| {
        calls_made.push(info("-", "-", Err(&e)));
        fault_of(None, &e, Lang::En)
    })?;
    match call_begin(app, headers, svc, op, params).await {
        Ok((begun, lang)) => Ok(Started {
            svc,
            op,
            lang,
            begun,
        }),
        Err(e) => Err(failed(svc, op, e, calls_made)),
    }
}

fn multicall_entry(c: XVal<'_>) -> Result<(String, Vec<XVal<'_>>), String> {
    let XVal::Struct(members) = c else {
        return Err("not a struct {methodName, params}".into());
    };
    let mut name = None;
    let mut params = Vec::new();
    for (k, v) in members {
        match (k.as_ref(), v) {
            ("methodName", XVal::Str(s)) => name = Some(s.trim().to_string()),
            ("params", v @ (XVal::Array(_) | XVal::Ints(_))) => {
                params = v.into_array().unwrap_or_default();
            }
            ("methodName" | "params", _) => {
                return Err(format!("'{k}' has the wrong type"));
            }
            (other, _) => return Err(format!("unknown member '{other}'")),
        }
    }
    Ok((name.ok_or("no methodName")?, params))
}

/// How a method is called: whether integers beyond `i4` may be `i8`, when the request started,
/// and whether its result may be streamed (not inside a multicall).
#[derive(Clone, Copy)]
struct One {
    i8_ok: bool,
    started: Instant,
    may_stream: bool,
}

/// One method call (outside or inside a multicall); its record goes to `calls_made`.
async fn one(
    app: Ctx<'_>,
    headers: &HeaderMap,
    name: &str,
    params: Vec<XVal<'_>>,
    how: One,
    calls_made: &mut Vec<CallInfo>,
) -> Answer {
    let i8_ok = how.i8_ok;
    if let Some(system) = name
        .strip_prefix("system.")
        .filter(|_| SYSTEM_METHODS.contains(&name))
    {
        calls_made.push(info("system", system, Ok(())));
    }
    let plain = |v: &Value| {
        let schema = Schema::default();
        let mut w = ValueWriter::new(&schema, i8_ok);
        w.plain(&Val::borrowed(v));
        w.out
    };
    match name {
        "system.listMethods" => {
            let mut names: Vec<String> = app
                .door
                .services
                .iter()
                .flat_map(|s| {
                    s.desc
                        .operations
                        .iter()
                        .map(move |o| format!("{}.{}", s.name, o.name))
                })
                .collect();
            names.extend(SYSTEM_METHODS.iter().map(|s| s.to_string()));
            Ok(Reply::Value(plain(&Value::from(names))))
        }
        "system.methodSignature" | "system.methodHelp" => {
            let target = match params.as_slice() {
                [XVal::Str(s)] => s.to_string(),
                _ => {
                    return Err((
                        INVALID_PARAMS,
                        format!("{name} takes one string: a method name"),
                    ));
                }
            };
            if SYSTEM_METHODS.contains(&target.as_str()) {
                return Ok(Reply::Value(if name == "system.methodHelp" {
                    plain(&Value::from(system_help(&target)))
                } else {
                    // Signatures of introspection methods vary; the convention is "undef".
                    plain(&Value::from("undef"))
                }));
            }
            let (svc, op) = find(app, &target).map_err(|e| fault_of(None, &e, Lang::En))?;
            let o = &svc.desc.operations[op];
            Ok(Reply::Value(if name == "system.methodHelp" {
                plain(&Value::from(xmlrpc::help(&svc.desc.schema, o)))
            } else {
                plain(&Value::from(vec![xmlrpc::signature(&svc.desc.schema, o)]))
            }))
        }
        _ => {
            let Started {
                svc,
                op,
                lang,
                begun,
            } = start(app, headers, name, params, calls_made).await?;
            let done = call_finish(app, svc, op, begun, lang, how).await;
            record(svc, op, done, calls_made)
        }
    }
}

/// A call of `svc`'s operation `op` that came to `done`: its record goes to `calls_made`, a
/// failure becomes its fault.
fn record(
    svc: &Service,
    op: usize,
    done: Result<Reply, (Error, Lang)>,
    calls_made: &mut Vec<CallInfo>,
) -> Answer {
    match done {
        Ok(v) => {
            calls_made.push(info(&svc.name, &svc.desc.operations[op].name, Ok(())));
            Ok(v)
        }
        Err(e) => Err(failed(svc, op, e, calls_made)),
    }
}

/// A call of `svc`'s operation `op` that failed: its record goes to `calls_made`; its fault.
fn failed(
    svc: &Service,
    op: usize,
    (e, lang): (Error, Lang),
    calls_made: &mut Vec<CallInfo>,
) -> (i32, String) {
    calls_made.push(info(&svc.name, &svc.desc.operations[op].name, Err(&e)));
    fault_of(Some(svc), &e, lang)
}

fn system_help(name: &str) -> &'static str {
    match name {
        "system.listMethods" => "Lists every method as <service>.<operation>.",
        "system.methodSignature" => {
            "The signatures of a method: [[result type, parameter types in order]]."
        }
        "system.methodHelp" => "The documentation of a method and its parameters.",
        _ => {
            "Calls several methods in one request: an array of {methodName, params}; each is answered with [result] or a fault struct."
        }
    }
}

/// The service and operation a method name refers to.
fn find<'a>(app: Ctx<'a>, name: &str) -> Result<(&'a Arc<Service>, usize), Error> {
    let unknown = || Error::UnknownMethod {
        name: name.to_string(),
        hint: "methods are <service>.<operation>; system.listMethods lists them".into(),
    };
    let (service, operation) = name.split_once('.').ok_or_else(unknown)?;
    let svc = app.door.service_named(service).ok_or_else(unknown)?;
    let op = svc
        .desc
        .operations
        .iter()
        .position(|o| o.name == operation)
        .ok_or_else(|| Error::UnknownMethod {
            name: name.to_string(),
            hint: format!(
                "{service} has: {}",
                svc.desc
                    .operations
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    Ok((svc, op))
}

/// The first half of a call of one operation through the shared pipeline: the service's
/// HTTP Basic check, the parameters converted by the operation's schema, then
/// [`Pipeline::begin`]; with the caller's language.
async fn call_begin<'t>(
    app: Ctx<'_>,
    headers: &HeaderMap,
    svc: &'t Service,
    op: usize,
    params: Vec<XVal<'t>>,
) -> Result<(Begun<'t>, Lang), (Error, Lang)> {
    let default_lang = svc.lang(&crate::call::Val::Null);
    let role_user = svc.authenticate(headers).map_err(|e| (e, default_lang))?;
    let operation = &svc.desc.operations[op];
    let params = xmlrpc::params_to_call(params, &svc.desc.schema, operation)
        .map_err(|e| (e.into(), default_lang))?;
    let lang = svc.lang(&params);
    match app.p.begin(svc, op, params, role_user.as_deref()).await {
        Ok(begun) => Ok((begun, lang)),
        Err(e) => Err((e, lang)),
    }
}

/// The second half: [`Pipeline::finish`] and the result written. A backend answer of
/// `server.stream_answers_from_bytes` or more is sent while it is written, when `how` allows.
async fn call_finish(
    app: Ctx<'_>,
    svc: &Arc<Service>,
    op: usize,
    begun: Begun<'_>,
    lang: Lang,
    how: One,
) -> Result<Reply, (Error, Lang)> {
    let One {
        i8_ok,
        started,
        may_stream,
    } = how;
    let operation = &svc.desc.operations[op];
    let encode = value_writer(svc, op, i8_ok, started);
    let detach_from = app.p.stream_answers_from().filter(|_| may_stream);
    let detaching = app.p.finish(svc, begun, encode, detach_from);
    let misfit = |shape| (svc.answer_misfit(op, &shape), lang);
    let d = match detaching.await.map_err(|e| (e, lang))? {
        Shaped::Now(v) => return v.map(Reply::Value).map_err(misfit),
        Shaped::Detached(d) => d,
    };
    let what = format!("{}.{}", svc.name, operation.name);
    let writer = svc.clone();
    let write = move |result: Lazy<'_>, flush: &mut Flush<'_>, at: usize| {
        let stamp = writer.stamp(started);
        let output = &writer.desc.operations[op].output;
        let result = Stamped::new(stamp.as_ref(), result);
        xmlrpc::response_flushing(&writer.desc.schema, i8_ok, output, result, flush, at)
            .map_err(|shape| writer.answer_misfit(op, &shape))
    };
    match stream::stream(app.p, started, d, what, write).await {
        Ok(Began::Streaming(body)) => Ok(Reply::Message(body)),
        Ok(Began::Ended(written)) => written
            .map(|xml| Reply::Message(OutBody::from(Bytes::from(xml))))
            .map_err(|e| (e, lang)),
        // As many answers as may be are being streamed: this one is written whole.
        Err(d) => d
            .answer(value_writer(svc, op, i8_ok, started))
            .map_err(|e| (e, lang))?
            .map(Reply::Value)
            .map_err(misfit),
    }
}

/// The encoder of an operation's result as a whole `<value>`.
fn value_writer(
    svc: &Service,
    op: usize,
    i8_ok: bool,
    started: Instant,
) -> impl FnOnce(Lazy<'_>, usize) -> Result<String, ShapeError> + Send + '_ {
    move |result: Lazy<'_>, _| {
        let mut w = ValueWriter::new(&svc.desc.schema, i8_ok);
        let stamp = svc.stamp(started);
        w.result(
            &svc.desc.operations[op].output,
            Stamped::new(stamp.as_ref(), result),
        )
        .map(|()| w.out)
    }
}

/// The one place an error becomes an XML-RPC fault: failures of the call of a service with a
/// profile carry the profile's errorId and text in the caller's language (as SOAP's
/// `ackCode=failure` does); others the code of [`fault_code`] and the error's message.
fn fault_of(svc: Option<&Service>, e: &Error, lang: Lang) -> (i32, String) {
    if let Some(p) = svc.and_then(Service::signed)
        && e.is_call_failure()
    {
        let t = p.failure_text(e, lang);
        return (t.id.parse().unwrap_or_else(|_| fault_code(e)), t.message);
    }
    (fault_code(e), e.message(lang))
}

/// The `faultCode` of an error: the standard codes for what is wrong with the message, the
/// bridge's own numbers ([`Error::number`]) for authentication, signature and backend
/// failures.
fn fault_code(err: &Error) -> i32 {
    use Error::*;
    match err {
        XmlRpc(e) => e.fault_code(),
        Read(r) if r.is_malformed() => PARSE_ERROR,
        Read(_) => INVALID_PARAMS,
        BodyTooLarge { .. }
        | BodyTimeout
        | UnsupportedContentEncoding(_)
        | BadContentEncoding { .. } => PARSE_ERROR,
        Soap(_) | Winstrom(_) | MethodNotAllowed(_) => INVALID_REQUEST,
        UnknownMethod { .. } | NoSuchService(_) => METHOD_NOT_FOUND,
        other => other.number().unwrap_or(INTERNAL_ERROR),
    }
}
