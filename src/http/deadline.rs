//! A request body must arrive within `http.request_timeout_ms`: a body that trickles in is cut
//! off, and the request answered `408` (JSON) on a connection then closed, so slow clients
//! cannot hold connections (and file descriptors) for as long as they like.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, body::MessageBody, web::Bytes};
use futures::Stream;
use tokio::time::Sleep;

/// The message a timed-out body read carries, so the error handler can tell it apart.
pub(super) const TIMED_OUT: &str = "the request body did not arrive in time";

/// A body stream that fails once its deadline passes.
struct Deadline {
    inner: Payload,
    timer: Pin<Box<Sleep>>,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.done = true;
            let err = io::Error::new(io::ErrorKind::TimedOut, TIMED_OUT);
            return Poll::Ready(Some(Err(PayloadError::Io(err))));
        }
        Poll::Pending
    }
}

/// The middleware: gives the request's body `limit` to arrive.
pub(super) async fn limit(
    limit: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let inner = req.take_payload();
    let bounded = Deadline {
        inner,
        timer: Box::pin(tokio::time::sleep(limit)),
        done: false,
    };
    req.set_payload(Payload::from(
        Box::pin(bounded) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
    ));
    next.call(req).await
}
