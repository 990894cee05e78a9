//! A connection wrapper that answers bad request heads itself, in JSON, and times requests.
//!
//! [`HeadGuard`] sits between the socket and actix-http. Reads go through a [`Framing`], which
//! holds each request head until it is whole and judged, and walks bodies by actix-http's own
//! rules. A refused head (too large, malformed, or not complete within the head timeout) is
//! never handed on: actix-http instead sees the end of the stream, finishes the responses it
//! owes, and shuts the connection down; the guard then writes its JSON answer and closes. A
//! body that breaks its framing, or is not all there a second after the request timeout (a
//! route that ignores its body would otherwise let actix-http wait for it for ever), closes
//! the connection without another answer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::{Framing, Refusal, Rejection};

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// How much a refused client may still send, read and dropped, before the connection closes.
const MAX_DRAIN: usize = 1024 * 1024;
/// How long a refused client's further bytes are read and dropped, at most.
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// How much longer than the request timeout a body may take before the guard closes the
/// connection (so that a route reading its body answers its own JSON 408 first).
const BODY_GRACE: Duration = Duration::from_secs(1);

/// What the guard times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timing {
    /// Nothing: between requests (actix-http's keep-alive covers idleness) or passed through.
    Idle,
    /// A request head.
    Head,
    /// A request body.
    Body,
}

/// A socket whose request heads are judged before actix-http reads them.
pub(crate) struct HeadGuard<S> {
    io: S,
    framing: Framing,
    /// Bytes judged fit to pass on, and how many of them have been.
    ready: Vec<u8>,
    passed: usize,
    scratch: Box<[u8]>,
    /// How long a request head (and, a little longer, its body) may take to arrive.
    timeout: Duration,
    timing: Timing,
    timer: Pin<Box<Sleep>>,
    /// The answer owed once actix-http shuts the connection (empty: close without one), and
    /// how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    /// Whether the write side is shut (after the answer), how much was read and dropped since,
    /// and until when that goes on.
    write_closed: bool,
    drained: usize,
    drain_until: Option<Instant>,
    /// Runs while a write waits for a client that does not read; past the timeout the
    /// connection is given up.
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl<S> HeadGuard<S> {
    pub(crate) fn new(io: S, timeout: Duration) -> Self {
        HeadGuard {
            io,
            framing: Framing::default(),
            ready: Vec::new(),
            passed: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            timeout,
            // The first request's head is timed from the connection's start.
            timing: Timing::Head,
            timer: Box::pin(tokio::time::sleep(timeout)),
            answer: None,
            write_closed: false,
            drained: 0,
            drain_until: None,
            write_stall: None,
        }
    }

    /// Passes a write's result on, failing it once writes have waited longer than the
    /// timeout for a client that does not read (so such a client cannot hold a connection).
    fn unless_stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.write_stall = None;
            return result;
        }
        let timeout = self.timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its responses",
            )));
        }
        Poll::Pending
    }

    fn refuse(&mut self, refusal: Refusal) {
        let answer = match refusal {
            Refusal::Answer(rejection) => {
                tracing::debug!(status = rejection.status, detail = %rejection.detail, "request refused before routing");
                rejection.to_response()
            }
            Refusal::Close => Vec::new(),
        };
        self.answer = Some((answer, 0));
        self.timing = Timing::Idle;
    }

    /// Times what the connection is in now: a head from its first byte (a new head restarts
    /// the clock), a body from the end of its head, nothing in between.
    fn retime(&mut self, heads_before: u64) {
        let new_head = self.framing.heads() != heads_before;
        let next = if self.framing.head_started() {
            Timing::Head
        } else if self.framing.in_body() {
            Timing::Body
        } else {
            Timing::Idle
        };
        let restart = match (self.timing, next) {
            (_, Timing::Idle) => false,
            (Timing::Idle, _) => true,
            (Timing::Head, Timing::Head) | (Timing::Body, Timing::Body) => new_head,
            (Timing::Head, Timing::Body) | (Timing::Body, Timing::Head) => true,
        };
        if restart {
            let limit = match next {
                Timing::Body => self.timeout + BODY_GRACE,
                _ => self.timeout,
            };
            self.timer.as_mut().reset(Instant::now() + limit);
        }
        self.timing = next;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.passed < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.passed);
                buf.put_slice(&this.ready[this.passed..this.passed + n]);
                this.passed += n;
                return Poll::Ready(Ok(()));
            }
            if this.answer.is_some() {
                // The end of the stream, as far as actix-http is concerned.
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    if this.framing.head_started() {
                        // The client closed its side mid-head; it can still read an answer.
                        this.refuse(Rejection::cut_head().into());
                        continue;
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    this.ready.clear();
                    this.passed = 0;
                    let heads_before = this.framing.heads();
                    match this.framing.feed(read.filled(), &mut this.ready) {
                        Ok(()) => this.retime(heads_before),
                        Err(refusal) => this.refuse(refusal),
                    }
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    if this.timing == Timing::Idle || this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let refusal = match this.timing {
                        Timing::Head if this.framing.head_started() => {
                            Rejection::slow_head(this.timeout.as_millis()).into()
                        }
                        // Nothing at all arrived on a new connection, or a body is late: close
                        // (a late body's request has its own answer).
                        _ => Refusal::Close,
                    };
                    this.refuse(refusal);
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.unless_stalled(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.unless_stalled(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.unless_stalled(cx, result)
    }

    /// Writes the answer owed (if a head was refused, or one was left half-sent), then shuts
    /// the socket. A client still sending when its head was refused would have its answer
    /// destroyed by the reset that closing unread data causes, so what it sends next is read
    /// and dropped, up to [`MAX_DRAIN`] bytes for at most [`DRAIN_TIME`].
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.answer.is_none() && this.framing.head_started() {
            // actix-http closes an idle keep-alive connection while a head is arriving.
            this.refuse(Rejection::unfinished_head().into());
        }
        let Some((answer, written)) = &mut this.answer else {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        };
        if !this.write_closed {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    break;
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.write_closed = true;
            this.drain_until = Some(Instant::now() + DRAIN_TIME);
            this.timer.as_mut().reset(Instant::now() + DRAIN_TIME);
        }
        if answer.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while this.drained < MAX_DRAIN && this.drain_until.is_some_and(|t| Instant::now() < t) {
            let mut read = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    this.drained += read.filled().len();
                }
                Poll::Ready(_) => break,
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    break;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}
