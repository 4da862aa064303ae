//! The SOAP front door: a service's URL path. `GET ?wsdl` / `?xsd=` describe it; `POST` is a
//! call: HTTP Basic, bounded body, envelope -> neutral call, the shared pipeline
//! ([`Pipeline::begin`], [`Pipeline::finish`]), result -> envelope. Errors of a decoded call go to the wire in
//! [`respond_error`]; faults are written only by [`fault_response`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::server::Body as Incoming;
use http::{HeaderValue, Method, Request, StatusCode};

use crate::call::Doc;
use crate::error::Party;
use crate::error::{Error, Lang};
use crate::mapping::Lazy;
use crate::pipeline::{Begun, Pipeline};
use crate::profile::signed::Stamped;
use crate::protocol::soap::{self, FaultKind, SoapError, SoapVersion};
use crate::protocol::xml::{Flush, ShapeError};
use crate::route::Shaped;

use super::stream::{self, Began};
use crate::server::{OutBody, Resp, header_str, text_response};
use crate::service::Service;
use crate::telemetry::{Calls, Outcome};

/// The services, by path (looked up on every call: foldhash rather than SipHash; the keys
/// are the configuration's, and a lookup inserts nothing).
#[derive(Debug, Default)]
pub(crate) struct SoapDoor {
    services: std::collections::HashMap<String, Arc<Service>, foldhash::fast::RandomState>,
}

impl SoapDoor {
    pub(crate) fn new(services: &[Arc<Service>]) -> SoapDoor {
        SoapDoor {
            services: services
                .iter()
                .map(|s| (s.path.clone(), s.clone()))
                .collect(),
        }
    }

    /// The service at `path` (without a trailing '/').
    pub(crate) fn service(&self, path: &str) -> Option<&Arc<Service>> {
        self.services.get(path)
    }
}

/// Answers one request to a SOAP service's path.
pub(crate) async fn handle(
    p: &Pipeline,
    svc: &Arc<Service>,
    req: Request<Incoming>,
    started: Instant,
) -> Resp {
    // The SOAP version to answer in before the envelope is read.
    let hint = SoapVersion::from_content_type(header_str(&req, http::header::CONTENT_TYPE));
    match *req.method() {
        Method::GET | Method::HEAD => describe(svc, req.uri().query()),
        Method::POST => match p
            .within_request_time(call(p, svc, req, hint, started))
            .await
        {
            Ok(r) => r,
            Err(_) => {
                let e = p.request_timed_out();
                fault_response(Ctx::service(svc), hint, &svc.env_prefix, &e, None)
            }
        },
        ref m => fault_response(
            Ctx::service(svc),
            hint,
            &svc.env_prefix,
            &Error::MethodNotAllowed(m.to_string()),
            None,
        ),
    }
}

/// A request for a path no service has: a SOAP fault (404), as legacy clients expect.
pub(crate) fn no_such_service(req: &Request<Incoming>) -> Resp {
    let hint = SoapVersion::from_content_type(header_str(req, http::header::CONTENT_TYPE));
    fault_response(
        Ctx {
            service: "-",
            operation: "-",
        },
        hint,
        "env",
        &Error::NoSuchService(req.uri().path().to_string()),
        None,
    )
}

/// `GET <path>?wsdl` (any case) serves the WSDL; `?xsd=<name>` an imported schema.
fn describe(svc: &Service, query: Option<&str>) -> Resp {
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.eq_ignore_ascii_case("wsdl") {
            return text_response(StatusCode::OK, "text/xml; charset=utf-8", svc.wsdl.clone());
        }
        if k.eq_ignore_ascii_case("xsd") {
            return match svc.desc.render_xsd(v, &svc.endpoint) {
                Some(x) => text_response(StatusCode::OK, "text/xml; charset=utf-8", x),
                None => text_response(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    format!("no schema '{v}' here\n"),
                ),
            };
        }
    }
    fault_response(
        Ctx::service(svc),
        SoapVersion::V11,
        &svc.env_prefix,
        &Error::MethodNotAllowed("GET".into()),
        None,
    )
}

async fn call(
    p: &Pipeline,
    svc: &Arc<Service>,
    req: Request<Incoming>,
    hint: SoapVersion,
    started: Instant,
) -> Resp {
    // Kept past the request (its body is read below); a header value shares the bytes it was
    // read into, so keeping it copies nothing.
    const SOAP_ACTION: http::HeaderName = http::HeaderName::from_static("soapaction");
    let ct_value = req.headers().get(http::header::CONTENT_TYPE).cloned();
    let action_value = req.headers().get(SOAP_ACTION).cloned();
    let ct = ct_value.as_ref().and_then(|v| v.to_str().ok());
    let action = soap::soap_action(action_value.as_ref().and_then(|v| v.to_str().ok()), ct);

    // Who is calling, before any work is done for them.
    let role_user = match svc.authenticate(req.headers()) {
        Ok(u) => u,
        Err(e) => {
            let challenge = svc.profile.as_ref().map(|p| p.www_authenticate());
            return fault_response(Ctx::service(svc), hint, &svc.env_prefix, &e, challenge);
        }
    };

    // An HTTP/1.0 client has no chunked framing: an answer sent while it is written would end
    // where the connection closes, so a broken one would look whole. Its answers are whole.
    let can_stream = req.version() >= http::Version::HTTP_11;
    // Kept for shadow mode only (the legacy service gets the same credentials and type).
    let req_headers = svc.shadow.as_ref().map(|_| req.headers().clone());
    // `_held`: the body's share of the bytes of bodies in flight, until the call is answered.
    let coding = req.headers().get(http::header::CONTENT_ENCODING).cloned();
    let (body, _held) = match p.read_body(req.into_body(), coding.as_ref()).await {
        Ok(b) => b,
        Err(e) => return fault_response(Ctx::service(svc), hint, &svc.env_prefix, &e, None),
    };
    let text = match crate::protocol::xml::decode_body(&body, ct) {
        Ok(t) => t,
        Err(e) => {
            return fault_response(Ctx::service(svc), hint, &svc.env_prefix, &e.into(), None);
        }
    };
    let (version, decoded) = soap::decode(
        &svc.desc,
        &text,
        action,
        svc.read_options(p.max_depth()),
        hint,
    );
    let call = match decoded {
        Ok(c) => c,
        Err(e) => {
            return fault_response(Ctx::service(svc), version, &svc.env_prefix, &e.into(), None);
        }
    };
    let operation = call.operation;
    let lang = svc.lang(&call.params);
    let shadow = svc.shadow.as_ref().filter(|s| s.wants(operation)).cloned();
    let headers = shadow.as_ref().and(req_headers);
    // Shadow mode compares whole answers: a shadowed call's answer is not streamed. The
    // legacy service gets the request as it came (the same bytes, shared).
    let stream = can_stream && shadow.is_none();
    let shadow_body = shadow.as_ref().map(|_| body.clone());
    let begun = match p
        .begin(svc, operation, call.params, role_user.as_deref())
        .await
    {
        Ok(Begun::Rendered(r)) => {
            // Nothing of the request is needed any more: its body, most of a large call's
            // memory, goes before the backend is called rather than after it answers.
            drop(text);
            drop(body);
            Ok(Begun::Rendered(r))
        }
        other => other,
    };
    let ctx = (svc.as_ref(), operation, version, lang, started);
    let resp = answer(p, svc, begun, ctx, stream).await;
    match (shadow, headers, shadow_body) {
        (Some(s), Some(headers), Some(body)) => {
            shadowed(&s, svc, operation, headers, body, resp).await
        }
        _ => resp,
    }
}

/// Sends a copy of the call to the legacy service in the background (shadow mode); the
/// answer is passed on as it is.
async fn shadowed(
    shadow: &std::sync::Arc<crate::migrate::shadow::Shadow>,
    svc: &Service,
    operation: usize,
    headers: http::HeaderMap,
    request: bytes::Bytes,
    resp: Resp,
) -> Resp {
    use http_body_util::BodyExt as _;
    let (parts, body) = resp.into_parts();
    // A whole body (a shadowed call's answer is never streamed) is one chunk, already here.
    let answer = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    shadow.spawn(crate::migrate::shadow::Exchange {
        operation_name: svc.desc.operations[operation].name.clone(),
        headers,
        request,
        status: parts.status.as_u16(),
        answer: answer.clone(),
    });
    http::Response::from_parts(parts, OutBody::from(answer))
}

/// Runs a decoded call and writes its answer (or its failure).
async fn answer(
    p: &Pipeline,
    svc: &Arc<Service>,
    begun: Result<Begun<'_>, Error>,
    ctx: AnswerCtx<'_>,
    stream: bool,
) -> Resp {
    let (_, op, version, _, started) = ctx;
    let encode = whole(svc, op, version, started);
    // A backend answer of `server.stream_answers_from_bytes` of JSON or more is written while
    // it is sent, on a blocking thread, instead of whole on the request's task: the answer's
    // text in memory is then a few pieces of [`PIECE`] bytes rather than all of it
    // (BENCHMARKS.md, 10 MB answers).
    let detach_from = p.stream_answers_from().filter(|_| stream);
    let detaching = match begun {
        Ok(begun) => p.finish(svc, begun, encode, detach_from).await,
        Err(e) => Err(e),
    };
    match detaching {
        Ok(Shaped::Now(written)) => answered(ctx, Ok(written)),
        Ok(Shaped::Detached(d)) => {
            let what = format!("{}.{}", svc.name, svc.desc.operations[op].name);
            let write = streaming(svc, op, version, started);
            match stream::stream(p, started, d, what, write).await {
                Ok(Began::Streaming(body)) => success(svc, op, version, body),
                Ok(Began::Ended(written)) => answered(ctx, written.map(Ok)),
                // As many answers as may be are being streamed: this one is written whole.
                Err(d) => answered(ctx, d.answer(whole(svc, op, version, started))),
            }
        }
        Err(e) => answered(ctx, Err(e)),
    }
}

/// What an answer is written for: the service, the operation, the SOAP version, the caller's
/// language and when the call started.
type AnswerCtx<'s> = (&'s Service, usize, SoapVersion, Lang, Instant);

/// The encoder of a whole answer. The envelope is written from the result while the backend's
/// answer it borrows from is alive, so a large answer is never copied into a result of its own.
fn whole(
    svc: &Service,
    op: usize,
    version: SoapVersion,
    started: Instant,
) -> impl FnOnce(Lazy<'_>, usize) -> Result<String, ShapeError> + Send + '_ {
    move |result: Lazy<'_>, answer_bytes: usize| {
        let stamp = svc.stamp(started);
        soap::encode_response(
            &svc.desc,
            op,
            version,
            &svc.env_prefix,
            &svc.body_prefix,
            Stamped::new(stamp.as_ref(), result),
            answer_bytes,
        )
    }
}

/// The writer of an answer sent while it is written ([`stream::stream`]).
fn streaming(
    svc: &Arc<Service>,
    op: usize,
    version: SoapVersion,
    started: Instant,
) -> impl stream::Writer {
    let svc = svc.clone();
    move |result: Lazy<'_>, flush: &mut Flush<'_>, at: usize| {
        let stamp = svc.stamp(started);
        soap::encode_response_flushing(
            &svc.desc,
            op,
            version,
            (&svc.env_prefix, &svc.body_prefix),
            Stamped::new(stamp.as_ref(), result),
            flush,
            at,
        )
        .map_err(|shape| svc.answer_misfit(op, &shape))
    }
}

/// The answer to a call whose result was written whole (or that failed).
fn answered(
    (svc, op, version, lang, started): AnswerCtx<'_>,
    written: Result<Result<String, ShapeError>, Error>,
) -> Resp {
    let e = match written {
        Ok(Ok(xml)) => return success(svc, op, version, OutBody::from(Bytes::from(xml))),
        Ok(Err(shape)) => svc.answer_misfit(op, &shape),
        Err(e) => e,
    };
    respond_error(svc, op, version, e, lang, started)
}

/// A successful call's answer.
fn success(svc: &Service, op: usize, version: SoapVersion, body: OutBody) -> Resp {
    let mut r = http::Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(version.content_type()),
    );
    let name = &svc.desc.operations[op].name;
    Calls::one("soap", &svc.name, name, Outcome::Success, "").attach(&mut r);
    r
}

/// The one place an error of a decoded call goes to the wire: failures of the call become
/// the profile's `ackCode=failure` response, everything else a SOAP fault.
fn respond_error(
    svc: &Service,
    operation: usize,
    version: SoapVersion,
    e: Error,
    lang: Lang,
    started: Instant,
) -> Resp {
    let ctx = Ctx {
        service: &svc.name,
        operation: &svc.desc.operations[operation].name,
    };
    if let Some(profile) = svc.signed().filter(|_| e.is_call_failure()) {
        let value = profile.failure(&e, lang, started);
        return match soap::encode_response(
            &svc.desc,
            operation,
            version,
            &svc.env_prefix,
            &svc.body_prefix,
            Doc::Json(&value),
            0,
        ) {
            Ok(xml) => {
                let mut r = text_response(StatusCode::OK, version.content_type(), xml);
                Calls::one(
                    "soap",
                    ctx.service,
                    ctx.operation,
                    Outcome::Failure,
                    e.code(),
                )
                .attach(&mut r);
                r
            }
            Err(shape) => fault_response(
                ctx,
                version,
                &svc.env_prefix,
                &Error::Internal(shape.to_string()),
                None,
            ),
        };
    }
    fault_response(ctx, version, &svc.env_prefix, &e, None)
}

/// Where a fault happened, for the log line.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    service: &'a str,
    operation: &'a str,
}

impl<'a> Ctx<'a> {
    fn service(svc: &'a Service) -> Self {
        Ctx {
            service: &svc.name,
            operation: "-",
        }
    }
}

/// The only writer of SOAP fault responses; each says what it was (its code, not its text:
/// error texts may quote request or backend content).
fn fault_response(
    ctx: Ctx<'_>,
    version: SoapVersion,
    env_prefix: &str,
    e: &Error,
    www_authenticate: Option<String>,
) -> Resp {
    let (status, kind) = fault_of(version, e);
    let message = e.to_string();
    let fault = soap::Fault {
        kind,
        code: e.code(),
        party: match e.party() {
            Party::Caller => "caller",
            Party::Backend => "backend",
            Party::Bridge => "bridge",
        },
        message: &message,
        backend_status: e.backend_status(),
        backend_code: e.backend_code(),
        fields: e.field_errors(),
    };
    let mut r = text_response(
        status,
        version.content_type(),
        soap::encode_fault(version, env_prefix, &fault),
    );
    if let Some(v) = www_authenticate.and_then(|v| HeaderValue::from_str(&v).ok()) {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    if let Some(s) = e.retry_after_s() {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(s));
    }
    Calls::one("soap", ctx.service, ctx.operation, Outcome::Fault, e.code()).attach(&mut r);
    r
}

/// The one place a fault's kind and HTTP status are chosen, from who is at fault and each
/// version's HTTP binding: SOAP 1.1 answers 500 (WS-I Basic Profile), SOAP 1.2 400 for
/// `Sender` faults and 500 for the rest. Transport refusals keep their own status (401, 404,
/// 405, 408, 413).
fn fault_of(version: SoapVersion, e: &Error) -> (StatusCode, FaultKind) {
    let kind = match e {
        Error::Soap(SoapError::VersionMismatch(_)) => FaultKind::VersionMismatch,
        Error::Soap(SoapError::MustUnderstand(_)) => FaultKind::MustUnderstand,
        e if e.party() == Party::Caller => FaultKind::Sender,
        _ => FaultKind::Receiver,
    };
    let status = match e {
        Error::Unauthorized => StatusCode::UNAUTHORIZED,
        Error::NoSuchService(_) => StatusCode::NOT_FOUND,
        Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        Error::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedContentEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::BackendCircuitOpen { .. }
        | Error::BackendBusy { .. }
        | Error::BodiesInFlight { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ if version == SoapVersion::V12 && kind == FaultKind::Sender => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, kind)
}
