//! Answers sent while they are written: a large backend answer, handed back by the pipeline as
//! a [`Detached`], is shaped and written on a thread of tokio's blocking pool, and its text goes
//! to the client in pieces ([`OutBody::streamed`]) as it is written. A door gives the writer of
//! its message; this module runs it, hands its pieces on, and says how it began.
//!
//! The answer's head goes out with its first piece, so a failure before then is answered as
//! the door answers any failure. A failure after it can only break the answer: the connection
//! is closed without ending the body, never a short body that looks whole.

use std::time::Instant;

use bytes::Bytes;

use crate::error::Error;
use crate::mapping::Lazy;
use crate::pipeline::Pipeline;
use crate::protocol::xml::Flush;
use crate::route::Detached;
use crate::server::{OutBody, Piece};

/// The size of the pieces a streamed answer is sent in.
pub(crate) const PIECE: usize = 128 * 1024;
/// The room a piece is written into: a piece, and what the last item written into it may add.
pub(crate) const PIECE_ROOM: usize = PIECE + PIECE / 8;
/// How many pieces may wait for the client before the writer waits for it.
const PIECES_WAITING: usize = 4;

/// Answers streamed at once at most, each holding a thread of tokio's blocking pool (shared
/// with DNS lookups and others) until it is written or its time is up; more are written whole
/// by their door.
static STREAMING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

/// How a streamed answer began: its body, from its first piece on, or having ended before a
/// piece was sent: with all of the message (it was shorter than a piece), or failed.
pub(crate) enum Began {
    Streaming(OutBody),
    Ended(Result<String, Error>),
}

/// What a streamed answer is written by: given the result, `flush` (which takes the text away
/// whenever it has reached `at` bytes) and `at`, it writes the whole message and returns what
/// was not flushed.
pub(crate) trait Writer:
    for<'t> FnOnce(Lazy<'t>, &mut Flush<'_>, usize) -> Result<String, Error> + Send + 'static
{
}

impl<W> Writer for W where
    W: for<'t> FnOnce(Lazy<'t>, &mut Flush<'_>, usize) -> Result<String, Error> + Send + 'static
{
}

/// What the writer's thread says first: its first piece, or how the message ended before one.
enum First {
    Piece(Bytes),
    Ended(Result<String, Error>),
}

/// Shapes `answer` and writes it with `write` on a blocking thread, sending its pieces until
/// the request's time is up; `what` names the call in log lines ("service.operation"). How a
/// streamed answer ended is counted (`soapbridge_streamed_answers_total`). `Err(answer)` when
/// as many answers as may be are being streamed: the door writes this one whole.
pub(crate) async fn stream(
    p: &Pipeline,
    started: Instant,
    answer: Detached,
    what: String,
    write: impl Writer,
) -> Result<Began, Detached> {
    let write = move |answer: Detached, flush: &mut Flush<'_>, at: usize| {
        answer
            .answer(|result, _| write(result, flush, at))
            .and_then(|w| w)
    };
    stream_answer(p, started, answer, what, write).await
}

/// [`stream`], with a writer given the answer itself (which it shapes, as [`Detached::answer`]
/// or otherwise) rather than its result.
pub(crate) async fn stream_answer(
    p: &Pipeline,
    started: Instant,
    answer: Detached,
    what: String,
    write: impl FnOnce(Detached, &mut Flush<'_>, usize) -> Result<String, Error> + Send + 'static,
) -> Result<Began, Detached> {
    let Ok(slot) = STREAMING.try_acquire() else {
        return Err(answer);
    };
    let (pieces, opening) = pieces(p.request_deadline(started));
    let context = crate::telemetry::current_request();
    let telemetry = p.telemetry().clone();
    tokio::task::spawn_blocking(move || {
        let end = crate::telemetry::within_request(context, || {
            write_pieces(answer, pieces, &what, write)
        });
        if let Some(end) = end {
            telemetry.streamed_answer(end);
        }
        drop(slot);
    });
    Ok(opening.began().await)
}

/// The blocking half of [`stream`]: shapes the answer and writes it, handing each piece on.
/// Says how a streamed answer ended (`None`: it ended before its first piece, and its door
/// answers it whole).
fn write_pieces(
    answer: Detached,
    mut pieces: Pieces,
    what: &str,
    write: impl FnOnce(Detached, &mut Flush<'_>, usize) -> Result<String, Error>,
) -> Option<&'static str> {
    let rt = tokio::runtime::Handle::current();
    let mut flush = |out: &mut String| {
        if pieces.gone.is_some() {
            // No one reads it any more: the text is let go as it is written.
            out.clear();
            return;
        }
        let text = std::mem::replace(out, String::with_capacity(PIECE_ROOM));
        rt.block_on(pieces.piece(text));
    };
    let written = write(answer, &mut flush, PIECE);
    rt.block_on(pieces.end(written, what))
}

/// The writer's end of an answer sent in pieces ([`pieces`]). Its first piece opens the answer
/// (the head goes out with it). A client that stops reading (or reads too slowly to be done by
/// the deadline) gets nothing more: what is written after is let go.
pub(crate) struct Pieces {
    first: Option<tokio::sync::oneshot::Sender<First>>,
    tx: tokio::sync::mpsc::Sender<Piece>,
    deadline: Instant,
    gone: Option<Gone>,
}

/// The door's end of an answer sent in pieces: how it began ([`Opening::began`]).
pub(crate) struct Opening {
    first: tokio::sync::oneshot::Receiver<First>,
    rx: tokio::sync::mpsc::Receiver<Piece>,
}

/// The two ends of an answer sent in pieces that must be read by `deadline` (the request's).
pub(crate) fn pieces(deadline: Instant) -> (Pieces, Opening) {
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let (tx, rx) = tokio::sync::mpsc::channel(PIECES_WAITING);
    let pieces = Pieces {
        first: Some(first_tx),
        tx,
        deadline,
        gone: None,
    };
    (pieces, Opening { first, rx })
}

impl Opening {
    /// Waits for the writer's first piece, or for its end before one.
    pub(crate) async fn began(self) -> Began {
        match self.first.await {
            Ok(First::Piece(piece)) => Began::Streaming(OutBody::streamed(piece, self.rx)),
            Ok(First::Ended(written)) => Began::Ended(written),
            Err(_) => Began::Ended(Err(Error::Internal("the answer's writer stopped".into()))),
        }
    }
}

impl Pieces {
    /// Whether no one will read what is written from now on: the client went away (before the
    /// answer began, its door stopped waiting for it), or did not read in time.
    pub(crate) fn unread(&self) -> bool {
        self.gone.is_some()
            || match &self.first {
                Some(f) => f.is_closed(),
                None => self.tx.is_closed(),
            }
    }

    /// Waits until no one will read what is written ([`Pieces::unread`]): to give up work
    /// whose outcome could reach no one.
    pub(crate) async fn until_unread(&mut self) {
        if self.gone.is_some() {
            return;
        }
        match &mut self.first {
            Some(f) => f.closed().await,
            None => self.tx.closed().await,
        }
    }

    /// Hands `text` on as the next piece, waiting (until the deadline) while the client has not
    /// read the ones before it. Once no one reads them, pieces are let go.
    pub(crate) async fn piece(&mut self, text: String) {
        if self.gone.is_some() {
            return;
        }
        self.gone = match self.first.take() {
            Some(f) => f
                .send(First::Piece(Bytes::from(text)))
                .err()
                .map(|_| Gone::Closed),
            None => self.send(Piece::More(Bytes::from(text))).await.err(),
        };
    }

    /// Ends the answer with the rest of its text, or breaks it with a failure that came after
    /// it began; `what` names the call in log lines. Says how a streamed answer ended (`None`:
    /// it ended before its first piece, and `written` goes to its door).
    pub(crate) async fn end(
        mut self,
        written: Result<String, Error>,
        what: &str,
    ) -> Option<&'static str> {
        let broken = match (self.first.take(), written) {
            (Some(f), written) => {
                let _ = f.send(First::Ended(written));
                return None;
            }
            (None, Ok(rest)) => {
                if self.gone.is_none() {
                    self.gone = self.send(Piece::Last(Bytes::from(rest))).await.err();
                }
                return Some(match self.gone {
                    None => "complete",
                    Some(Gone::Closed) => "closed",
                    Some(Gone::Late) => {
                        tracing::warn!(
                            call = what,
                            "a streamed answer was not read within the request's time; the rest was not sent"
                        );
                        "late"
                    }
                });
            }
            (None, Err(e)) => e,
        };
        // After its head was sent, a failure can only break the answer.
        tracing::warn!(
            call = what,
            code = broken.code(),
            "a streamed answer failed after it began; the connection is closed"
        );
        if self.gone.is_none() {
            let _ = self.send(Piece::Broken(broken.code().to_string())).await;
        }
        Some("broken")
    }

    /// Hands a piece to the answer's body, waiting (until the deadline) while the client has
    /// not read the ones before it.
    async fn send(&self, piece: Piece) -> Result<(), Gone> {
        match self.tx.try_send(piece) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(Gone::Closed),
            Err(tokio::sync::mpsc::error::TrySendError::Full(piece)) => {
                let sent = tokio::time::timeout_at(self.deadline.into(), self.tx.send(piece));
                match sent.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(Gone::Closed),
                    Err(_) => Err(Gone::Late),
                }
            }
        }
    }
}

/// Why a streamed answer's pieces stopped going out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// The client went away (or its connection broke).
    Closed,
    /// The client did not read them before the request's time was up.
    Late,
}
