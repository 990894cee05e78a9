//! A connection wrapper that answers bad request heads itself, in JSON.
//!
//! [`HeadGuard`] sits between the socket and actix-http. Reads go through a [`Framing`], which
//! holds each request head until it is whole and judged. A refused head (too large, malformed,
//! or not complete within the head timeout) is never handed on: actix-http instead sees the end
//! of the stream, finishes the responses it owes, and shuts the connection down; at that point
//! the guard writes its JSON answer and closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::{Framing, Rejection};

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// How much a refused client may still send, read and dropped, before the connection closes.
const MAX_DRAIN: usize = 1024 * 1024;

/// A socket whose request heads are judged before actix-http reads them.
pub(crate) struct HeadGuard<S> {
    io: S,
    framing: Framing,
    /// Bytes judged fit to pass on, and how many of them have been.
    ready: Vec<u8>,
    passed: usize,
    scratch: Box<[u8]>,
    /// How long a request head may take to arrive.
    head_timeout: Duration,
    /// Runs while a head is awaited: from the connection's start for its first request, from
    /// its first byte for later ones.
    head_timer: Option<Pin<Box<Sleep>>>,
    /// The answer owed once actix-http shuts the connection, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    /// Whether the write side is shut (after the answer), and how much was read and dropped.
    write_closed: bool,
    drained: usize,
}

impl<S> HeadGuard<S> {
    pub(crate) fn new(io: S, head_timeout: Duration) -> Self {
        HeadGuard {
            io,
            framing: Framing::default(),
            ready: Vec::new(),
            passed: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            head_timeout,
            head_timer: Some(Box::pin(tokio::time::sleep(head_timeout))),
            answer: None,
            write_closed: false,
            drained: 0,
        }
    }

    fn refuse(&mut self, rejection: Rejection) {
        tracing::debug!(status = rejection.status, detail = %rejection.detail, "request refused before routing");
        self.answer = Some((rejection.to_response(), 0));
        self.head_timer = None;
    }

    /// Stops the head timer once a head is whole (`heads_before` is the count before the last
    /// read), and starts it when the next head begins.
    fn time_heads(&mut self, heads_before: u64) {
        if self.framing.heads() != heads_before {
            self.head_timer = None;
        }
        if self.framing.head_started() && self.head_timer.is_none() {
            let deadline = Instant::now() + self.head_timeout;
            self.head_timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
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
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.ready.clear();
                    this.passed = 0;
                    let heads_before = this.framing.heads();
                    match this.framing.feed(read.filled(), &mut this.ready) {
                        Ok(()) => this.time_heads(heads_before),
                        Err(rejection) => this.refuse(rejection),
                    }
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    let expired = this
                        .head_timer
                        .as_mut()
                        .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                    if !expired {
                        return Poll::Pending;
                    }
                    if this.framing.head_started() {
                        this.refuse(Rejection::slow_head(this.head_timeout.as_millis()));
                    } else {
                        // Nothing arrived at all: close without an answer, as for an idle
                        // keep-alive connection.
                        this.head_timer = None;
                        this.answer = Some((Vec::new(), 0));
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes the answer owed (if a head was refused, or one was left half-sent), then shuts
    /// the socket. A client still sending when its head was refused would have its answer
    /// destroyed by the reset that closing unread data causes, so what it sends next is read
    /// and dropped (up to [`MAX_DRAIN`]; actix-http's disconnect timeout bounds the time).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.answer.is_none() && this.framing.head_started() {
            // actix-http closes an idle keep-alive connection while a head is arriving.
            this.refuse(Rejection::unfinished_head());
        }
        let Some((answer, written)) = &mut this.answer else {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        };
        if *written < answer.len() || !this.write_closed {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    break;
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.write_closed = true;
        }
        if answer.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while this.drained < MAX_DRAIN {
            let mut read = ReadBuf::new(&mut this.scratch);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut read)) {
                Ok(()) if !read.filled().is_empty() => this.drained += read.filled().len(),
                _ => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}
