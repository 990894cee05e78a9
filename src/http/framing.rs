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

/// The largest request head passed on (actix-http's own limit is 128 KiB).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields a request may have (actix-http's limit).
pub(crate) const MAX_HEADERS: usize = 96;
/// The longest request target (path and query) accepted.
pub(crate) const MAX_URI_BYTES: usize = 16 * 1024;
/// The longest chunk-size line or trailer section accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4 * 1024;

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
    Chunked(Chunk),
    /// The connection left HTTP/1.1 (an upgrade or `CONNECT`): everything passes.
    Passthrough,
}

#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Passing on this many more bytes of chunk data.
    Data(u64),
    /// Expecting the CR LF after chunk data: `true` once the CR was seen.
    DataEnd(bool),
    /// Reading trailer lines after the last chunk, up to an empty line.
    Trailers,
}

/// Tracks request boundaries on one connection.
#[derive(Debug)]
pub(crate) struct Framing {
    state: State,
    /// The head (or chunk line) read so far.
    held: Vec<u8>,
    /// Bytes of trailers read for the current chunked body.
    trailer_bytes: usize,
    /// Request heads passed on so far.
    heads: u64,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            state: State::Head,
            held: Vec::new(),
            trailer_bytes: 0,
            heads: 0,
        }
    }
}

impl Framing {
    /// Whether part of a request head has arrived and waits for the rest.
    pub(crate) fn head_started(&self) -> bool {
        matches!(self.state, State::Head) && !self.held.is_empty()
    }

    /// How many request heads have been passed on.
    pub(crate) fn heads(&self) -> u64 {
        self.heads
    }

    /// Reads `input`, appending to `out` what may be passed on. A rejected head is never passed
    /// on; what came before it is.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Rejection> {
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
                        // Empty lines before a request line are skipped (RFC 9112 §2.2).
                        let skip = input
                            .iter()
                            .take_while(|b| matches!(b, b'\r' | b'\n'))
                            .count();
                        input = &input[skip..];
                        if input.is_empty() {
                            break;
                        }
                    }
                    let (taken, complete) = take_head(&self.held, input);
                    self.held.extend_from_slice(&input[..taken]);
                    input = &input[taken..];
                    if !complete {
                        if self.held.len() > MAX_HEAD_BYTES {
                            return Err(too_large());
                        }
                        break;
                    }
                    if self.held.len() > MAX_HEAD_BYTES {
                        return Err(too_large());
                    }
                    self.state = judge(&self.held)?;
                    self.heads += 1;
                    out.append(&mut self.held);
                }
                State::Chunked(chunk) => {
                    input = match chunk {
                        Chunk::Data(left) => {
                            let n = input
                                .len()
                                .min(usize::try_from(*left).unwrap_or(usize::MAX));
                            out.extend_from_slice(&input[..n]);
                            *left -= n as u64;
                            if *left == 0 {
                                *chunk = Chunk::DataEnd(false);
                            }
                            &input[n..]
                        }
                        Chunk::DataEnd(saw_cr) => {
                            let byte = input[0];
                            out.push(byte);
                            match (byte, *saw_cr) {
                                (b'\r', false) => *saw_cr = true,
                                (b'\n', true) => *chunk = Chunk::Size,
                                _ => {
                                    return Err(Rejection::bad(
                                        "a chunk of the chunked body does not end with CR LF",
                                    ));
                                }
                            }
                            &input[1..]
                        }
                        Chunk::Size | Chunk::Trailers => {
                            let line_end = input.iter().position(|&b| b == b'\n');
                            let taken = line_end.map_or(input.len(), |i| i + 1);
                            self.held.extend_from_slice(&input[..taken]);
                            out.extend_from_slice(&input[..taken]);
                            let rest = &input[taken..];
                            if self.held.len() > MAX_CHUNK_LINE {
                                return Err(Rejection::bad(format!(
                                    "a line of the chunked body (a chunk size or a trailer) is longer than {MAX_CHUNK_LINE} bytes"
                                )));
                            }
                            if line_end.is_some() {
                                let line = std::mem::take(&mut self.held);
                                self.state = self.end_of_chunk_line(&line)?;
                            }
                            rest
                        }
                    };
                }
            }
        }
        Ok(())
    }

    /// What follows a complete chunk-size or trailer line.
    fn end_of_chunk_line(&mut self, line: &[u8]) -> Result<State, Rejection> {
        if let State::Chunked(Chunk::Trailers) = self.state {
            self.trailer_bytes += line.len();
            if self.trailer_bytes > MAX_HEAD_BYTES {
                return Err(Rejection {
                    status: 431,
                    error: "header_too_large",
                    detail: format!("the chunked body's trailers exceed {MAX_HEAD_BYTES} bytes"),
                });
            }
            return Ok(if line == b"\r\n" || line == b"\n" {
                self.trailer_bytes = 0;
                State::Head
            } else {
                State::Chunked(Chunk::Trailers)
            });
        }
        match httparse::parse_chunk_size(line) {
            Ok(httparse::Status::Complete((_, 0))) => Ok(State::Chunked(Chunk::Trailers)),
            Ok(httparse::Status::Complete((_, size))) => Ok(State::Chunked(Chunk::Data(size))),
            _ => Err(Rejection::bad(
                "a chunk-size line of the chunked body is malformed",
            )),
        }
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

/// Judges a complete head by actix-http's rules, returning how its body is framed.
fn judge(head: &[u8]) -> Result<State, Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Rejection::bad("the request head is incomplete"));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection {
                status: 431,
                error: "header_too_large",
                detail: format!("the request has more than {MAX_HEADERS} header fields"),
            });
        }
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
        let value = std::str::from_utf8(header.value).map(str::trim);
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
        State::Chunked(Chunk::Size)
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

    /// Feeds `input` in pieces of `step` bytes; returns what passed and the rejection, if any.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, Option<Rejection>) {
        let mut framing = Framing::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            if let Err(rejection) = framing.feed(piece, &mut out) {
                return (out, Some(rejection));
            }
        }
        (out, None)
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
        let cases: [(&[u8], u16, &str); 12] = [
            (b"GARBAGE\r\n\r\n", 400, "malformed"),
            (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
            (b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "one Host"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400, "Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400, "one Content-Length"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "chunked"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, "both"),
            (b"POST / HTTP/1.0\r\n\r\n", 400, "HTTP/1.0 POST"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "chunk-size"),
            (long_uri.as_bytes(), 414, "request target"),
            (many.as_bytes(), 431, "header fields"),
        ];
        for (input, status, words) in cases {
            let (out, rejection) = run(input, 5);
            let rejection =
                rejection.unwrap_or_else(|| panic!("{:?} passed", String::from_utf8_lossy(input)));
            assert_eq!(rejection.status, status, "{rejection:?}");
            assert!(rejection.detail.contains(words), "{rejection:?}");
            if status != 400 || !rejection.detail.contains("chunk") {
                assert!(out.is_empty(), "a refused head was passed on");
            }
        }
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
        framing.feed(b"\r\n", &mut out).expect("a valid head");
        assert!(!framing.head_started());
        framing.feed(b"GET / HT", &mut out).expect("a valid head");
        assert!(framing.head_started());
        framing
            .feed(b"TP/1.1\r\nHost: x\r\n\r\n", &mut out)
            .expect("a valid head");
        assert!(!framing.head_started());
        assert_eq!(framing.heads(), 1);
    }
}
