//! The narrow interface every front door gets: the request's limits, and the one path from a
//! decoded call to its result (the profile's signature check, then the operation: a backend
//! route, or the stock sync). Doors never see the `App`, nor each other.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;

use crate::call::Val;
use crate::clock::Clock;
use crate::config::{Limits, StockCall};
use crate::error::Error;
use crate::mapping::{Doc, Lazy, Scope};
use crate::protocol::xml::ReadError;
use crate::route::{self, Rendered, Shaped};
use crate::server::{Body, BodyBudget, Coding, FREE_BODY_BYTES, Held, WholeBody};
use crate::service::{Operation, Service};
use crate::stock::StockSync;

/// A call between [`Pipeline::begin`] and [`Pipeline::finish`].
pub(crate) enum Begun<'a> {
    /// Its backend request, rendered: nothing of the call (nor of the body it was read from)
    /// is needed any more.
    Rendered(Rendered),
    /// The operation and its parameters, needed further on.
    Call(usize, Val<'a>),
}

#[derive(Debug)]
pub(crate) struct Pipeline {
    limits: Limits,
    /// Shared by every generation: the bound is the process's.
    body_budget: Option<Arc<BodyBudget>>,
    clock: Clock,
    stock: Option<Arc<StockSync>>,
    telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Pipeline {
    pub(crate) fn new(
        limits: Limits,
        body_budget: Option<Arc<BodyBudget>>,
        clock: Clock,
        stock: Option<Arc<StockSync>>,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> Pipeline {
        Pipeline {
            limits,
            body_budget,
            clock,
            stock,
            telemetry,
        }
    }

    /// The deepest XML nesting a request may have.
    pub(crate) fn max_depth(&self) -> usize {
        self.limits.max_depth
    }

    /// Reads a request body within the size and time limits, and the bytes of large bodies
    /// in flight (`server.max_body_bytes_in_flight`): a body of declared length waits, within
    /// the time its client has to send it, for its length to be free before it is read. What
    /// the body holds of that budget is given back when the [`Held`] is dropped: the door
    /// keeps it until the call is answered, since what is decoded from the body lives as long.
    ///
    /// A body sent compressed (`Content-Encoding: gzip` or `deflate`, as PHP's SoapClient
    /// sends with `compression`) is given decompressed; `max_body_bytes` bounds both what is
    /// read and what it decompresses to, and the budget holds the larger.
    pub(crate) async fn read_body(
        &self,
        body: Body,
        encoding: Option<&HeaderValue>,
    ) -> Result<(Bytes, Held), Error> {
        let limit = self.limits.max_body;
        let coding = Coding::of(encoding).map_err(Error::UnsupportedContentEncoding)?;
        let deadline = tokio::time::Instant::now() + self.limits.body_timeout;
        let busy = || Error::BodiesInFlight {
            limit: self.body_budget.as_ref().map_or(0, |b| b.limit()),
        };
        let mut held = Held::default();
        // Only a large body of declared length waits (a small one never takes from the budget).
        let declared = http_body::Body::size_hint(&body)
            .exact()
            .filter(|&n| n <= limit as u64 && n > FREE_BODY_BYTES as u64);
        if let (Some(b), Some(n)) = (self.body_budget.as_deref(), declared)
            && !tokio::time::timeout_at(deadline, b.take(&mut held, n as usize, true))
                .await
                .unwrap_or(false)
        {
            return Err(busy());
        }
        let budget = self.body_budget.as_deref().map(|b| (b, &mut held));
        let read = crate::server::read_whole(body, limit, budget);
        let body = match tokio::time::timeout_at(deadline, read).await {
            Err(_) => Err(Error::BodyTimeout),
            Ok(Ok(b)) => Ok(b),
            Ok(Err(WholeBody::TooLarge)) => Err(Error::BodyTooLarge { limit }),
            Ok(Err(WholeBody::Busy)) => Err(busy()),
            Ok(Err(WholeBody::Failed(e))) => {
                Err(ReadError::MalformedXml(format!("reading the body failed: {e}")).into())
            }
        }?;
        if coding == Coding::Identity {
            return Ok((body, held));
        }
        let bad = |reason: String| Error::BadContentEncoding {
            coding: if coding == Coding::Gzip {
                "gzip"
            } else {
                "deflate"
            },
            reason,
        };
        let body = coding
            .decode(body, limit)
            .map_err(|e| bad(e.to_string()))?
            .ok_or(Error::BodyTooLarge { limit })?;
        if let Some(b) = self.body_budget.as_deref()
            && !b.take(&mut held, body.len(), false).await
        {
            return Err(busy());
        }
        Ok((body, held))
    }

    /// `f` within the whole-request time limit: `Err` when the time is up, which the door
    /// answers with [`Pipeline::request_timed_out`]. (A `Timeout` as it is, not an `async fn`
    /// around it: that would hold `f` twice, and a door's call is its largest future.)
    pub(crate) fn within_request_time<F: Future>(&self, f: F) -> tokio::time::Timeout<F> {
        tokio::time::timeout(self.limits.request_timeout, f)
    }

    /// When the work of a request that started at `started` stops starting calls and gives up
    /// waiting for them, so that what it did reaches the client in time: at 80% and 95% of
    /// `request_timeout_ms` (winstrom documents, a multicall's calls, a batch's chunks). The
    /// request's context carries them (`telemetry::times`), from `App::handle` on.
    pub(crate) fn times(&self, started: Instant) -> route::Times {
        let limit = self.limits.request_timeout;
        route::Times {
            stop_starting: started + limit.mul_f64(0.8),
            cut_off: started + limit.mul_f64(0.95),
            limit_ms: limit.as_millis() as u64,
        }
    }

    /// The error of a request that ran out of its time ([`Pipeline::within_request_time`]).
    pub(crate) fn request_timed_out(&self) -> Error {
        Error::RequestTimeout {
            limit_ms: self.limits.request_timeout.as_millis() as u64,
        }
    }

    /// From what size of a backend's JSON answer a SOAP answer is sent while it is written
    /// (`server.stream_answers_from_bytes`); `None`: never.
    pub(crate) fn stream_answers_from(&self) -> Option<usize> {
        self.limits.stream_answers_from
    }

    /// The bridge's metrics, for a door's work that outlives the request (`front::stream`).
    pub(crate) fn telemetry(&self) -> &Arc<crate::telemetry::Telemetry> {
        &self.telemetry
    }

    /// When the request started at `started` must be answered by: its time limit, which also
    /// bounds an answer sent while it is written.
    pub(crate) fn request_deadline(&self, started: Instant) -> Instant {
        started + self.limits.request_timeout
    }

    /// The first half of a decoded call of `svc`'s operation `operation`: the profile's checks
    /// (the signature check consumes its parameters) and, for a backend call
    /// that needs nothing more of the call once its request is rendered, that rendering
    /// ([`Begun::Rendered`]): the door may then let the request body go before the backend
    /// is called, which a large request's memory is most of.
    pub(crate) async fn begin<'a>(
        &self,
        svc: &Service,
        operation: usize,
        mut params: Val<'a>,
        role_user: Option<&str>,
    ) -> Result<Begun<'a>, Error> {
        if let Some(p) = &svc.profile {
            let user = role_user.ok_or(Error::Unauthorized)?;
            let now_ms = self.clock.now_ms();
            p.admit(user, now_ms)?;
            if let Some(signed) = p.signed()
                && let Err(e) = signed.verify(&mut params, user, now_ms).await
            {
                if e.is_call_failure() {
                    self.telemetry.signature_refused(e.code());
                }
                return Err(e);
            }
        }
        if let Operation::Backend(route) = &svc.operations[operation]
            && let Some(rendered) = route.render_once(&params).await?
        {
            return Ok(Begun::Rendered(rendered));
        }
        Ok(Begun::Call(operation, params))
    }

    /// The second half: the operation, whose result is handed to `encode` while the backend's
    /// answer it borrows from is alive (with a size hint: see
    /// [`Route::answer`](crate::route::Route::answer)). The encoder wraps the result in the
    /// profile's stamp ([`Service::stamp`]). A single backend answer of `detach_from` bytes or
    /// more is handed back unshaped instead, to be sent while it is written (`front::stream`).
    pub(crate) async fn finish<R>(
        &self,
        svc: &Service,
        begun: Begun<'_>,
        encode: impl FnOnce(Lazy<'_>, usize) -> R + Send,
        detach_from: Option<usize>,
    ) -> Result<Shaped<R>, Error> {
        let (operation, params) = match begun {
            Begun::Rendered(r) => return Box::pin(r.answer(encode, detach_from)).await,
            Begun::Call(operation, params) => (operation, params),
        };
        match &svc.operations[operation] {
            Operation::Backend(route) => Box::pin(route.answer(&params, encode, detach_from)).await,
            Operation::Stock(call) => Box::pin(self.stock(call, &params, encode))
                .await
                .map(Shaped::Now),
        }
    }

    /// A stock-service operation: its input rendered from the call, the stock sync's answer
    /// shaped into the result.
    async fn stock<R>(
        &self,
        call: &StockCall,
        params: &Val<'_>,
        encode: impl FnOnce(Lazy<'_>, usize) -> R,
    ) -> Result<R, Error> {
        let sync = self
            .stock
            .as_ref()
            .ok_or_else(|| Error::Internal("no stock sync is configured".into()))?;
        let input = call
            .body
            .as_ref()
            .and_then(|t| t.eval(&Scope::new(Doc::Call(params), Doc::Call(params))))
            .unwrap_or(Value::Null);
        let answer = sync.handle(&call.op, &input).await?;
        call.response
            .read_with(&Scope::new(Doc::Json(&answer), Doc::Call(params)), |v| {
                encode(v, 0)
            })
            .ok_or_else(|| {
                Error::Internal("the stock operation's response mapping found nothing".into())
            })
    }
}
