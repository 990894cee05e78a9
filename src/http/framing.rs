//! HTTP/1.1 request framing, read ahead of actix-http so that a bad request head gets a JSON
//! answer.
//!
//! actix-http answers a head that is too large (431), malformed (400) or slow (408) from deep
//! inside its codec, with no body and no hook. [`Framing`] reads the same byte stream first:
//! it holds each request head until it is complete, judges it by the rules actix-http applies
//! (and ours: size, header count, URI length), and passes it on only when actix-http will accept
//! it. Bodies pass through as they arrive, counted by `Content-Length` or walked chunk by chunk,
//! so that the next head is found where actix-http will look for it.

use actix_web::http::{Method, Uri};

use super::chunked::{Chunked, Walk};

/// The largest request head passed on (actix-http's own limit is 128 KiB).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields a request may have (actix-http's limit).
pub(crate) const MAX_HEADERS: usize = 96;
/// The longest request target (path and query) accepted.
pub(crate) const MAX_URI_BYTES: usize = 16 * 1024;

/// How a connection is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A request head was refused before actix-http saw it: answer it, then close.
    Answer(Rejection),
    /// A body broke its framing after its head was passed on (actix-http answers that
    /// request): close without another answer.
    Close,
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal::Answer(rejection)
    }
}

/// Why a request was refused before it reached the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub status: u16,
    pub error: &'static str,
    pub detail: String,
}

impl Rejection {
    fn bad(detail: impl Into<String>) -> Self {
        Rejection {
            status: 400,
            error: "bad_request",
            detail: detail.into(),
        }
    }

    /// The answer to a head that did not arrive within `timeout_ms`.
    pub(crate) fn slow_head(timeout_ms: u128) -> Self {
        Rejection {
            status: 408,
            error: "request_timeout",
            detail: format!("the request head did not arrive within {timeout_ms} ms"),
        }
    }

    /// The answer to a head the client stopped sending (it closed its side) before the end.
    pub(crate) fn cut_head() -> Self {
        Rejection::bad("the connection was closed before the request head was complete")
    }

    /// The answer to a head left incomplete when the server closed the connection (its idle
    /// keep-alive limit ran out, or the server is stopping).
    pub(crate) fn unfinished_head() -> Self {
        Rejection {
            status: 408,
            error: "request_timeout",
            detail: "the request head was not complete when the server closed the connection (idle keep-alive limit, or shutdown)".into(),
        }
    }

    /// The full HTTP/1.1 response, closing the connection.
    pub(crate) fn to_response(&self) -> Vec<u8> {
        let body = serde_json::json!({ "error": self.error, "detail": self.detail }).to_string();
        let reason = match self.status {
            408 => "Request Timeout",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            _ => "Bad Request",
        };
        format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// Where the reader is in the request stream.
#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head,
    /// Passing on this many more body bytes.
    Body(u64),
    /// Walking a chunked body.
    Chunked(Chunked),
    /// The connection left HTTP/1.1 (an upgrade or `CONNECT`): everything passes.
    Passthrough,
}

/// Tracks request boundaries on one connection.
#[derive(Debug)]
pub(crate) struct Framing {
    state: State,
    /// The head read so far.
    held: Vec<u8>,
    /// Empty-line bytes skipped before the current head (they count as its start, and
    /// against its size).
    blank: usize,
    /// Request heads passed on so far.
    heads: u64,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            state: State::Head,
            held: Vec::new(),
            blank: 0,
            heads: 0,
        }
    }
}

impl Framing {
    /// Whether part of a request head has arrived and waits for the rest.
    pub(crate) fn head_started(&self) -> bool {
        matches!(self.state, State::Head) && (!self.held.is_empty() || self.blank > 0)
    }

    /// How many request heads have been passed on.
    pub(crate) fn heads(&self) -> u64 {
        self.heads
    }

    /// Whether a body is arriving (its head passed on, its end not yet seen).
    pub(crate) fn in_body(&self) -> bool {
        matches!(self.state, State::Body(_) | State::Chunked(_))
    }

    /// Reads `input`, appending to `out` what may be passed on. A refused head is never passed
    /// on; what came before it is. A broken body is passed on up to the byte that breaks it
    /// (so actix-http sees the same fault), and the connection is then closed.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
        while !input.is_empty() {
            match &mut self.state {
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                State::Body(left) => {
                    let n = input
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..n]);
                    *left -= n as u64;
                    input = &input[n..];
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Head => {
                    if self.held.is_empty() {
                        // Empty lines before a request line are skipped (RFC 9112 §2.2), but
                        // they start the head's clock and count against its size.
                        let skip = input
                            .iter()
                            .take_while(|b| matches!(b, b'\r' | b'\n'))
                            .count();
                        input = &input[skip..];
                        self.blank += skip;
                        if self.blank > MAX_HEAD_BYTES {
                            return Err(too_large().into());
                        }
                        if input.is_empty() {
                            break;
                        }
                    }
                    let (taken, complete) = take_head(&self.held, input);
                    let new_line = input[..taken].contains(&b'\n');
                    self.held.extend_from_slice(&input[..taken]);
                    input = &input[taken..];
                    if !complete {
                        if self.held.len() > MAX_HEAD_BYTES {
                            return Err(too_large().into());
                        }
                        // What cannot become a request (TLS, garbage) is refused at once: its
                        // first bytes are judged, and then each line as it ends.
                        if new_line || self.held.len() <= 64 {
                            judge_partial(&self.held)?;
                        }
                        break;
                    }
                    if self.held.len() > MAX_HEAD_BYTES {
                        return Err(too_large().into());
                    }
                    self.state = judge(&self.held)?;
                    self.heads += 1;
                    self.blank = 0;
                    out.append(&mut self.held);
                }
                State::Chunked(chunked) => {
                    let (n, walk) = chunked.walk(input);
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    match walk {
                        Walk::More => {}
                        Walk::Done => self.state = State::Head,
                        Walk::Broken => return Err(Refusal::Close),
                    }
                }
            }
        }
        Ok(())
    }
}

fn too_large() -> Rejection {
    Rejection {
        status: 431,
        error: "header_too_large",
        detail: format!("the request head exceeds {MAX_HEAD_BYTES} bytes"),
    }
}

/// How many bytes of `input` belong to the head begun in `held`, and whether that completes it.
/// A head ends with an empty line: LF followed by LF or by CR LF.
fn take_head(held: &[u8], input: &[u8]) -> (usize, bool) {
    // The last two bytes held are all the context the end pattern needs.
    let mut prev = [0u8; 2];
    for (i, b) in held.iter().rev().take(2).enumerate() {
        prev[1 - i] = *b;
    }
    for (i, &b) in input.iter().enumerate() {
        if b == b'\n' && (prev[1] == b'\n' || (prev[1] == b'\r' && prev[0] == b'\n')) {
            return (i + 1, true);
        }
        prev = [prev[1], b];
    }
    (input.len(), false)
}

/// Refuses a partial head that cannot become a valid one.
fn judge_partial(head: &[u8]) -> Result<(), Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(head) {
        Ok(_) => Ok(()),
        Err(httparse::Error::TooManyHeaders) => Err(too_many_headers()),
        Err(err) => Err(Rejection::bad(format!(
            "the request head is malformed ({err})"
        ))),
    }
}

fn too_many_headers() -> Rejection {
    Rejection {
        status: 431,
        error: "header_too_large",
        detail: format!("the request has more than {MAX_HEADERS} header fields"),
    }
}

/// A header value as actix-http reads it: visible ASCII (and tabs), trimmed; `None` otherwise.
fn ascii_value(value: &[u8]) -> Option<&str> {
    let visible = value.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
    if visible {
        std::str::from_utf8(value).ok().map(str::trim)
    } else {
        None
    }
}

/// Judges a complete head by actix-http's rules, returning how its body is framed.
fn judge(head: &[u8]) -> Result<State, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Rejection::bad("the request head is incomplete"));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_many_headers()),
        Err(err) => {
            return Err(Rejection::bad(format!(
                "the request head is malformed ({err})"
            )));
        }
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Rejection::bad("the request line is incomplete"));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Rejection::bad("the request method is not a valid token"))?;
    if path.len() > MAX_URI_BYTES {
        return Err(Rejection {
            status: 414,
            error: "uri_too_long",
            detail: format!("the request target exceeds {MAX_URI_BYTES} bytes"),
        });
    }
    Uri::try_from(path).map_err(|_| Rejection::bad("the request target is not a valid URI"))?;
    let http11 = version == 1;

    let mut content_length = None;
    let (mut chunked, mut seen_te, mut seen_host, mut websocket) = (false, false, false, false);
    for header in req.headers.iter() {
        let name = header.name;
        let value = ascii_value(header.value).ok_or(());
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(Rejection::bad(
                    "the request has more than one Content-Length",
                ));
            }
            content_length = Some(
                value
                    .ok()
                    .filter(|v| !v.starts_with('+'))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| Rejection::bad("Content-Length is not a number"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(Rejection::bad(
                    "Transfer-Encoding is not allowed in HTTP/1.0",
                ));
            }
            if seen_te {
                return Err(Rejection::bad(
                    "the request has more than one Transfer-Encoding",
                ));
            }
            seen_te = true;
            match value {
                Ok(v) if v.eq_ignore_ascii_case("chunked") => chunked = true,
                _ => {
                    return Err(Rejection::bad(
                        "the only Transfer-Encoding accepted is chunked",
                    ));
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            if seen_host {
                return Err(Rejection::bad("the request has more than one Host"));
            }
            seen_host = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            websocket |= value.is_ok_and(|v| v.eq_ignore_ascii_case("websocket"));
        }
    }
    if http11 && !seen_host {
        return Err(Rejection::bad("an HTTP/1.1 request needs a Host header"));
    }
    if chunked && content_length.is_some() {
        return Err(Rejection::bad(
            "the request has both Content-Length and Transfer-Encoding",
        ));
    }
    if !http11 && method == Method::POST && content_length.is_none() {
        return Err(Rejection::bad("an HTTP/1.0 POST needs a Content-Length"));
    }
    Ok(if chunked {
        State::Chunked(Chunked::default())
    } else if websocket {
        State::Passthrough
    } else {
        match content_length {
            Some(n) if n > 0 => State::Body(n),
            _ if method == Method::CONNECT => State::Passthrough,
            _ => State::Head,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns what passed and the refusal, if any.
    fn feed_all(input: &[u8], step: usize) -> (Vec<u8>, Option<Refusal>) {
        let mut framing = Framing::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            if let Err(refusal) = framing.feed(piece, &mut out) {
                return (out, Some(refusal));
            }
        }
        (out, None)
    }

    /// As [`feed_all`], for input that is either fine or a refused head.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, Option<Rejection>) {
        match feed_all(input, step) {
            (out, None) => (out, None),
            (out, Some(Refusal::Answer(rejection))) => (out, Some(rejection)),
            (_, Some(Refusal::Close)) => panic!("a body broke"),
        }
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn pipelined_requests_pass_whole_in_any_pieces() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(GET);
        stream.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        stream.extend_from_slice(
            b"POST /c HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n",
        );
        stream.extend_from_slice(GET);
        for step in [1, 2, 3, 7, 64, stream.len()] {
            let (out, rejection) = run(&stream, step);
            assert_eq!(rejection, None, "step {step}");
            assert_eq!(out, stream[2..], "step {step}");
        }
    }

    #[test]
    fn a_head_over_the_limit_is_a_431_and_is_not_passed_on() {
        let mut stream = GET.to_vec();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nX: ");
        stream.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        for step in [100, 8192] {
            let (out, rejection) = run(&stream, step);
            assert_eq!(rejection.map(|r| r.status), Some(431));
            assert_eq!(out, GET);
        }
    }

    #[test]
    fn each_broken_head_is_refused_with_its_reason() {
        let long_uri = format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "u".repeat(MAX_URI_BYTES)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS)
        );
        let cases: [(&[u8], u16, &str); 14] = [
            (b"GARBAGE\r\n\r\n", 400, "malformed"),
            (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
            (b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "one Host"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400, "Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400, "one Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "chunked"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, "both"),
            (b"POST / HTTP/1.0\r\n\r\n", 400, "HTTP/1.0 POST"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\xc2\xa0\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400, "one Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\xc2\xa0\r\n\r\n", 400, "Content-Length"),
            (b"\x16\x03\x01\x02\x00\x01\x00", 400, "malformed"),
            (long_uri.as_bytes(), 414, "request target"),
            (many.as_bytes(), 431, "header fields"),
        ];
        for (input, status, words) in cases {
            let (out, rejection) = run(input, 5);
            let rejection =
                rejection.unwrap_or_else(|| panic!("{:?} passed", String::from_utf8_lossy(input)));
            assert_eq!(rejection.status, status, "{rejection:?}");
            assert!(rejection.detail.contains(words), "{rejection:?}");
            assert!(out.is_empty(), "a refused head was passed on");
        }
    }

    #[test]
    fn a_broken_body_passes_up_to_its_fault_and_closes() {
        let head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = head.to_vec();
        stream.extend_from_slice(b"3\r\nabcX\r\n0\r\n\r\n");
        let (out, refusal) = feed_all(&stream, 4);
        assert_eq!(refusal, Some(Refusal::Close));
        assert_eq!(out, stream[..head.len() + 7]);
    }

    #[test]
    fn a_non_ascii_upgrade_is_not_an_upgrade() {
        // actix-http reads `websocket\u{a0}` as no upgrade: the next head must still be judged.
        let mut stream =
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\xc2\xa0\r\n\r\n".to_vec();
        stream.extend_from_slice(b"BAD\x01 / HTTP/1.1\r\n\r\n");
        let (_, rejection) = run(&stream, 7);
        assert_eq!(rejection.map(|r| r.status), Some(400));
    }

    #[test]
    fn an_upgrade_passes_everything_after_it() {
        let mut stream =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec();
        stream.extend_from_slice(b"\x81\x85not http at all\r\n\r\n");
        let (out, rejection) = run(&stream, 3);
        assert_eq!((out, rejection), (stream, None));
    }

    #[test]
    fn a_started_head_is_seen() {
        let mut framing = Framing::default();
        let mut out = Vec::new();
        assert!(!framing.head_started());
        framing.feed(b"\r\n", &mut out).expect("a valid head");
        assert!(framing.head_started(), "blank lines start a head's clock");
        framing.feed(b"GET / HT", &mut out).expect("a valid head");
        assert!(framing.head_started());
        framing
            .feed(b"TP/1.1\r\nHost: x\r\n\r\n", &mut out)
            .expect("a valid head");
        assert!(!framing.head_started());
        assert_eq!(framing.heads(), 1);
    }
}
