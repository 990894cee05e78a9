//! A TCP stream that stops reading once the server has sent more than a budget since the
//! budget was last refilled. lettre reads a reply line until its end before checking its
//! length, so a server that never ends a line would otherwise fill memory until the command's
//! timeout (gigabytes on a fast link).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes a server may send in one exchange (a greeting, or one message's replies): replies
/// are a few hundred bytes; this leaves room for any EHLO list.
pub const BUDGET: u64 = 1024 * 1024;

/// What a session's reads may still take; shared with its stream.
#[derive(Debug, Clone)]
pub struct Budget(Arc<AtomicU64>);

impl Budget {
    /// A full budget.
    pub fn new() -> Budget {
        Budget(Arc::new(AtomicU64::new(BUDGET)))
    }

    /// Fills it again (before each exchange).
    pub fn refill(&self) {
        self.0.store(BUDGET, Ordering::Relaxed);
    }
}

/// A TCP stream whose reads spend a [`Budget`].
#[derive(Debug)]
pub struct CappedStream {
    inner: TcpStream,
    budget: Budget,
}

impl CappedStream {
    /// `inner`, reading against `budget`.
    pub fn new(inner: TcpStream, budget: Budget) -> CappedStream {
        CappedStream { inner, budget }
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.budget.0.load(Ordering::Relaxed);
        if left == 0 {
            return Poll::Ready(Err(io::Error::other(format!(
                "the SMTP server sent more than {BUDGET} bytes in one exchange"
            ))));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.budget
            .0
            .store(left.saturating_sub(read), Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for CappedStream {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}
