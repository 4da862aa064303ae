//! The HTTP/1.1 server: accept loop, keep-alive connections, header read timeout, and
//! graceful shutdown that lets in-flight calls finish.
//!
//! Handlers get the request body as a [`Body`] that the server can take back once the handler
//! has answered: whatever the handler left unread (an early 401, a 413 after the limit) is read
//! and thrown away, within bounds, before the answer goes out, so that a client that writes its
//! whole body before reading sees the answer and its keep-alive connection stays usable. When
//! the rest cannot be drained in bounds, the answer says `Connection: close`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time a client has to send a request's head (also ends idle keep-alive connections).
    pub header_timeout: Duration,
    /// How long shutdown waits for in-flight calls.
    pub grace: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How much of a body a handler left unread is read and thrown away before answering.
    pub drain: Drain,
    /// Kept at the number of open connections, when given.
    pub connections: Option<prometheus_client::metrics::gauge::Gauge>,
}

/// Bounds for reading away the unread rest of a request body.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub max_bytes: u64,
    pub max_time: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            max_bytes: 128 * 1024 * 1024,
            max_time: Duration::from_secs(10),
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            max_connections: 10_000,
            drain: Drain::default(),
            connections: None,
        }
    }
}

/// Runs the bridge on `listener` until `shutdown` completes: its background work (stock
/// delivery workers) too, which stops after the server and releases what it holds.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut opts = app.serve_options();
    opts.connections = Some(app.connections());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let background = app.start_background(stopping);
    let handler_app = app.clone();
    let grace = opts.grace;
    serve(
        listener,
        move |req| {
            let app = handler_app.clone();
            // Boxed: hyper keeps the allocation of a connection's last request future while
            // the connection idles, so it should be a pointer, not the whole call's state.
            Box::pin(async move { app.handle(req).await })
        },
        opts,
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    if let Some(b) = background
        && tokio::time::timeout(grace, b).await.is_err()
    {
        tracing::warn!("background work did not stop within the grace period");
    }
}

/// The most a connection's read buffer holds, and the largest request head (start line and
/// headers; a larger one is answered 431). A body is read from the socket in pieces of at most
/// this size. hyper's default (about 400 KiB) let each connection's buffer grow to megabytes
/// while a large body streamed through it; at 64 KiB, 1 MB and 10 MB requests need less memory
/// and less CPU per call (BENCHMARKS.md), and a winstrom URL with a 60,000-character record id
/// still reaches the door that answers it in Flexi's shape (32 KiB would not).
pub(crate) const READ_BUFFER_MAX: usize = 64 * 1024;

/// Serves HTTP/1.1 with `handler` until `shutdown` completes, then stops accepting and waits
/// (up to the grace period) for open requests to be answered.
pub async fn serve<F, Fut, B>(
    listener: TcpListener,
    handler: F,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(READ_BUFFER_MAX)
        .max_header_size(READ_BUFFER_MAX)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let drain = opts.drain;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let h = handler.clone();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req: Request<Incoming>| {
                        let h = h.clone();
                        async move {
                            let (req, body) = Body::wrap(req);
                            let mut resp = h(req).await;
                            body.settle(&mut resp, drain).await;
                            Ok::<_, Infallible>(resp)
                        }
                    }),
                );
                let conn = graceful.watch(conn);
                let open = opts.connections.clone();
                if let Some(g) = &open {
                    g.inc();
                }
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    if let Some(g) = open {
                        g.dec();
                    }
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(opts.grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// An answer.
pub type Resp = Response<OutBody>;

/// An answer's body: whole, as almost every answer is, or written while it is sent (a large
/// SOAP answer: [`OutBody::streamed`]).
#[derive(Debug, Default)]
pub struct OutBody(Out);

#[derive(Debug, Default)]
enum Out {
    #[default]
    Empty,
    Whole(Bytes),
    Streamed {
        /// What was written before the answer's head was sent.
        first: Option<Bytes>,
        rx: tokio::sync::mpsc::Receiver<Piece>,
        /// The writer said that its last piece was sent.
        done: bool,
    },
}

/// A piece of a streamed answer, from its writer.
#[derive(Debug)]
pub enum Piece {
    /// More of the answer.
    More(Bytes),
    /// Its last piece: the answer is complete.
    Last(Bytes),
    /// The answer cannot be completed (why, for the log): the connection is closed without
    /// ending the body, so the client sees a broken answer rather than a short one.
    Broken(String),
}

impl OutBody {
    /// A body of `first` and then what the writer sends to `rx`, up to its [`Piece::Last`].
    /// A writer that goes away without sending it breaks the answer (never a short one).
    pub fn streamed(first: Bytes, rx: tokio::sync::mpsc::Receiver<Piece>) -> OutBody {
        OutBody(Out::Streamed {
            first: Some(first),
            rx,
            done: false,
        })
    }
}

impl From<Bytes> for OutBody {
    fn from(b: Bytes) -> OutBody {
        OutBody(Out::Whole(b))
    }
}

impl http_body::Body for OutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match &mut self.0 {
            Out::Empty => Poll::Ready(None),
            Out::Whole(_) => match std::mem::take(&mut self.0) {
                Out::Whole(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                _ => unreachable!("matched above"),
            },
            Out::Streamed { done: true, .. } => Poll::Ready(None),
            Out::Streamed {
                first: first @ Some(_),
                ..
            } => Poll::Ready(first.take().map(|b| Ok(Frame::data(b)))),
            Out::Streamed { rx, done, .. } => match rx.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Piece::More(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Piece::Last(b))) => {
                    *done = true;
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(Some(Piece::Broken(why))) => {
                    *done = true;
                    Poll::Ready(Some(Err(std::io::Error::other(why))))
                }
                Poll::Ready(None) => {
                    *done = true;
                    Poll::Ready(Some(Err(std::io::Error::other(
                        "the answer's writer stopped before its end",
                    ))))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, Out::Empty | Out::Streamed { done: true, .. })
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Out::Empty => SizeHint::with_exact(0),
            Out::Whole(b) => SizeHint::with_exact(b.len() as u64),
            Out::Streamed { .. } => SizeHint::default(),
        }
    }
}

/// A request header as text, when it is text.
pub fn header_str<B>(req: &Request<B>, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// An answer with a status, a Content-Type and a body.
pub fn text_response(status: http::StatusCode, ct: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ct)
        .body(OutBody::from(body.into()))
        .expect("valid response")
}

/// A request body a handler reads like any other ([`http_body::Body`]); the server keeps a
/// handle to it so that it can read away whatever the handler left.
#[derive(Debug)]
pub struct Body {
    shared: Arc<Mutex<BodyState>>,
}

#[derive(Debug)]
struct BodyState {
    inner: Option<Incoming>,
    /// The handler asked for at least one frame.
    polled: bool,
    /// The body was read to its end.
    ended: bool,
}

/// The server's handle to a request's body, to settle it after the handler has answered.
struct BodyHandle {
    shared: Arc<Mutex<BodyState>>,
    expects_continue: bool,
    /// When the request's head was read: reading away what the handler left ends at this plus
    /// the body's time ([`Drain::max_time`]), never later than the handler's own read of the
    /// body (which starts after this) would have.
    arrived: tokio::time::Instant,
}

impl Body {
    fn wrap(req: Request<Incoming>) -> (Request<Body>, BodyHandle) {
        let expects_continue = req
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (parts, inner) = req.into_parts();
        let shared = Arc::new(Mutex::new(BodyState {
            ended: inner.is_end_stream(),
            inner: Some(inner),
            polled: false,
        }));
        let handle = BodyHandle {
            shared: shared.clone(),
            expects_continue,
            arrived: tokio::time::Instant::now(),
        };
        (Request::from_parts(parts, Body { shared }), handle)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BodyState> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut st = self.state();
        st.polled = true;
        let Some(inner) = st.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                st.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // A broken body cannot be drained: the connection will be closed.
                st.inner = None;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        let st = self.state();
        st.ended || st.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.state()
            .inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl BodyHandle {
    /// After the handler's answer: reads away what it left of the body (within `drain`: its
    /// bytes, and the body's time counted from the request's arrival, so that a client whose
    /// body is late gets its answer when its time is up, not a second period later), or marks
    /// the answer `Connection: close` when that cannot be done.
    async fn settle<B>(self, resp: &mut Response<B>, drain: Drain) {
        let (rest, polled) = {
            let mut st = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            if st.ended {
                return;
            }
            (st.inner.take(), st.polled)
        };
        let usable = match rest {
            Some(b) if b.is_end_stream() => true,
            // Reading now would invite a body the client has not sent yet.
            Some(_) if self.expects_continue && !polled => false,
            Some(b) => drain_body(b, drain, self.arrived + drain.max_time).await,
            None => false,
        };
        if !usable {
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Reads a body to its end and drops its bytes; `false` when it did not end within bounds.
async fn drain_body(mut body: Incoming, drain: Drain, until: tokio::time::Instant) -> bool {
    let read = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    seen += f.data_ref().map_or(0, |d| d.len() as u64);
                    if seen > drain.max_bytes {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout_at(until, read).await.unwrap_or(false)
}

/// Why [`read_whole`] gave no body.
#[derive(Debug)]
pub(crate) enum WholeBody {
    /// More than the limit (declared or sent).
    TooLarge,
    /// The connection failed while the body was read.
    Failed(String),
    /// The [`BodyBudget`] had no room for it.
    Busy,
}

impl std::fmt::Display for WholeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WholeBody::TooLarge => f.write_str("length limit exceeded"),
            WholeBody::Failed(e) => f.write_str(e),
            WholeBody::Busy => f.write_str("no room among the request bodies in flight"),
        }
    }
}

/// Bodies up to this size are read outside the [`BodyBudget`]: every connection may hold this
/// much in its read buffer anyway ([`READ_BUFFER_MAX`]), so `max_connections` bounds them, and
/// a small call never waits behind large ones.
pub(crate) const FREE_BODY_BYTES: usize = READ_BUFFER_MAX;

/// The bytes of request bodies longer than [`FREE_BODY_BYTES`] that the bridge reads and holds
/// at once, across all requests and doors (`server.max_body_bytes_in_flight`). A body takes
/// its length from the budget before it is read (its declared length) or as it arrives
/// (chunked), and gives it back when the call that holds it is answered ([`Held`]). Counted in
/// KiB, so that any size fits a permit count.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    kib: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

/// What one body took from the [`BodyBudget`]; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Held(Option<tokio::sync::OwnedSemaphorePermit>);

impl Held {
    fn kib(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits())
    }
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> BodyBudget {
        let kib = Self::kib_of(limit);
        BodyBudget {
            kib: Arc::new(tokio::sync::Semaphore::new(kib)),
            limit,
        }
    }

    /// The permits that stand for `limit` bytes.
    fn kib_of(limit: usize) -> usize {
        limit
            .div_ceil(1024)
            .min(tokio::sync::Semaphore::MAX_PERMITS)
    }

    /// The bytes held now (in whole KiB per body).
    pub(crate) fn held_bytes(&self) -> usize {
        let total = Self::kib_of(self.limit);
        (total - self.kib.available_permits().min(total)) * 1024
    }

    /// The configured bound, in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes into `held` what a body of `bytes` in all needs beyond what it holds: waiting
    /// for it when `wait`, or only if it is there now. False when it was not given.
    pub(crate) async fn take(&self, held: &mut Held, bytes: usize, wait: bool) -> bool {
        if bytes <= FREE_BODY_BYTES {
            return true;
        }
        let kib = bytes.div_ceil(1024);
        if kib > Self::kib_of(self.limit) {
            // More than the whole budget (a reload raised `max_body_bytes` past it, which
            // takes effect at restart): waiting would not help.
            return false;
        }
        let Some(more) = kib.checked_sub(held.kib()).filter(|&n| n > 0) else {
            return true;
        };
        let Ok(more) = u32::try_from(more) else {
            return false;
        };
        let got = if wait {
            self.kib.clone().acquire_many_owned(more).await.ok()
        } else {
            self.kib.clone().try_acquire_many_owned(more).ok()
        };
        match (got, &mut held.0) {
            (None, _) => false,
            (Some(p), Some(h)) => {
                h.merge(p);
                true
            }
            (Some(p), h) => {
                *h = Some(p);
                true
            }
        }
    }
}

/// Reads a whole body, at most `limit` bytes, into one buffer. A body in one frame is kept as
/// it came (no copy); a longer one is gathered into a buffer sized from its declared length,
/// and each frame is let go as soon as it is copied, so that a large message is held once
/// rather than as its frames plus a joined copy at twice the capacity.
///
/// With a budget, a body longer than [`FREE_BODY_BYTES`] takes what it grows to from it as it
/// arrives, without waiting (a body that waited while holding part of the budget could hold up
/// another that does the same): [`WholeBody::Busy`] when the budget has no room. A body whose
/// length is declared takes it all before it is read ([`crate::pipeline::Pipeline::read_body`]).
pub(crate) async fn read_whole<B>(
    mut body: B,
    limit: usize,
    mut budget: Option<(&BodyBudget, &mut Held)>,
) -> Result<Bytes, WholeBody>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(WholeBody::TooLarge);
    }
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| WholeBody::Failed(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = first.as_ref().map_or(0, Bytes::len) + joined.len() + data.len();
        if total > limit {
            return Err(WholeBody::TooLarge);
        }
        if let Some((b, held)) = budget.as_mut()
            && !b.take(held, total, false).await
        {
            return Err(WholeBody::Busy);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            Some(f) => {
                let want = declared.map_or(total, |n| (n as usize).max(total));
                joined.reserve_exact(want);
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// How a request body is encoded for transfer (`Content-Encoding`). PHP's SoapClient sends
/// `gzip` (or `deflate`) bodies when configured with `compression => SOAP_COMPRESSION_GZIP |
/// <level>`; nothing else is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    /// The zlib format, as RFC 9110 says; a raw deflate stream (which some clients send) is
    /// taken too.
    Deflate,
}

impl Coding {
    /// The coding a `Content-Encoding` header names, or the name when it is not one of ours
    /// (several codings in a row are not taken either).
    pub(crate) fn of(header: Option<&HeaderValue>) -> Result<Coding, String> {
        let Some(v) = header else {
            return Ok(Coding::Identity);
        };
        let name = v.to_str().unwrap_or("?").trim();
        let is = |coding: &str| name.eq_ignore_ascii_case(coding);
        if name.is_empty() || is("identity") {
            Ok(Coding::Identity)
        } else if is("gzip") || is("x-gzip") {
            Ok(Coding::Gzip)
        } else if is("deflate") {
            Ok(Coding::Deflate)
        } else {
            Err(name.chars().take(64).collect())
        }
    }

    /// The body decoded, at most `limit` bytes of it: `Ok(None)` when it decodes to more.
    pub(crate) fn decode(self, body: Bytes, limit: usize) -> std::io::Result<Option<Bytes>> {
        use std::io::Read;
        fn bounded(r: impl Read, limit: usize) -> std::io::Result<Option<Bytes>> {
            let mut out = Vec::new();
            r.take(limit as u64 + 1).read_to_end(&mut out)?;
            Ok((out.len() <= limit).then(|| Bytes::from(out)))
        }
        match self {
            Coding::Identity => Ok((body.len() <= limit).then_some(body)),
            Coding::Gzip => bounded(flate2::read::MultiGzDecoder::new(&body[..]), limit),
            Coding::Deflate => match bounded(flate2::read::ZlibDecoder::new(&body[..]), limit) {
                Err(_) => bounded(flate2::read::DeflateDecoder::new(&body[..]), limit),
                done => done,
            },
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new connections; finishing calls in flight");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A body that gives the frames (or the error) it was made with, one per poll.
    struct Frames(VecDeque<Result<Bytes, std::io::Error>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
        }
    }

    fn frames(parts: &[&'static [u8]]) -> Frames {
        Frames(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect())
    }

    #[tokio::test]
    async fn a_whole_body_is_read_into_one_buffer_within_the_limit() {
        // One frame is kept as it came.
        let one: &'static [u8] = b"<a>1</a>";
        let got = read_whole(frames(&[one]), 100, None).await.unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr());
        // Several are joined, in order.
        let got = read_whole(frames(&[b"<a>", b"1", b"</a>"]), 100, None)
            .await
            .unwrap();
        assert_eq!(&got[..], b"<a>1</a>");
        // More than the limit, declared or sent, is refused.
        assert!(matches!(
            read_whole(
                http_body_util::Full::new(Bytes::from_static(b"0123456789")),
                9,
                None
            )
            .await,
            Err(WholeBody::TooLarge)
        ));
        assert!(matches!(
            read_whole(frames(&[b"01234", b"56789"]), 9, None).await,
            Err(WholeBody::TooLarge)
        ));
        // A failing connection is named.
        let broken = Frames(VecDeque::from([
            Ok(Bytes::from_static(b"<a>")),
            Err(std::io::Error::other("connection reset")),
        ]));
        assert!(matches!(
            read_whole(broken, 100, None).await,
            Err(WholeBody::Failed(e)) if e.contains("connection reset")
        ));
    }

    #[test]
    fn gzip_and_deflate_bodies_are_decoded_within_the_limit_and_others_named() {
        use std::io::Write;
        let text = b"<soapenv:Envelope>\xc3\x9cr\xc3\xbcn</soapenv:Envelope>".repeat(20);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
            e.write_all(&text).unwrap();
            Bytes::from(e.finish().unwrap())
        };
        let zlib = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
            e.write_all(&text).unwrap();
            Bytes::from(e.finish().unwrap())
        };
        let raw = {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(5));
            e.write_all(&text).unwrap();
            Bytes::from(e.finish().unwrap())
        };
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(Coding::of(None), Ok(Coding::Identity));
        assert_eq!(Coding::of(Some(&v("GZIP"))), Ok(Coding::Gzip));
        assert_eq!(Coding::of(Some(&v("x-gzip"))), Ok(Coding::Gzip));
        assert_eq!(Coding::of(Some(&v("deflate"))), Ok(Coding::Deflate));
        assert_eq!(Coding::of(Some(&v("br"))), Err("br".to_string()));
        assert_eq!(
            Coding::of(Some(&v("gzip, br"))),
            Err("gzip, br".to_string())
        );
        let n = text.len();
        assert_eq!(
            &Coding::Gzip.decode(gz.clone(), n).unwrap().unwrap()[..],
            &text[..]
        );
        assert_eq!(
            &Coding::Deflate.decode(zlib, n).unwrap().unwrap()[..],
            &text[..]
        );
        assert_eq!(
            &Coding::Deflate.decode(raw, n).unwrap().unwrap()[..],
            &text[..]
        );
        // What decodes to more than the limit is refused, however small it came.
        assert_eq!(Coding::Gzip.decode(gz, n - 1).unwrap(), None);
        assert!(
            Coding::Gzip
                .decode(Bytes::from_static(b"not gzip"), n)
                .is_err()
        );
    }

    #[tokio::test]
    async fn large_bodies_take_their_bytes_from_the_budget_and_give_them_back() {
        let pieces = |n: usize| {
            Frames(
                (0..n)
                    .map(|_| Ok(Bytes::from(vec![b'x'; 60 * 1024])))
                    .collect(),
            )
        };
        let budget = BodyBudget::new(200 * 1024);
        // A small body is read outside the budget, even when the budget is all taken.
        let mut all = Held::default();
        assert!(budget.take(&mut all, 200 * 1024, false).await);
        let mut small = Held::default();
        let got = read_whole(frames(&[b"<a/>"]), 1 << 20, Some((&budget, &mut small))).await;
        assert_eq!(&got.unwrap()[..], b"<a/>");
        // A large one arriving in pieces finds no room: refused, holding nothing.
        let mut held = Held::default();
        let got = read_whole(pieces(2), 1 << 20, Some((&budget, &mut held))).await;
        assert!(matches!(got, Err(WholeBody::Busy)));
        assert_eq!(held.kib(), 0);
        // Once the budget is given back, it is read, and holds its size until dropped.
        drop(all);
        let got = read_whole(pieces(2), 1 << 20, Some((&budget, &mut held))).await;
        assert_eq!(got.unwrap().len(), 120 * 1024);
        assert_eq!(held.kib(), 120);
        let mut other = Held::default();
        assert!(!budget.take(&mut other, 100 * 1024, false).await);
        drop(held);
        assert!(budget.take(&mut other, 100 * 1024, false).await);
        // More than the whole budget is refused at once, even to a body willing to wait.
        let mut huge = Held::default();
        let at_once = tokio::time::timeout(
            Duration::from_secs(5),
            budget.take(&mut huge, 201 * 1024, true),
        );
        assert_eq!(at_once.await, Ok(false));
    }
}
