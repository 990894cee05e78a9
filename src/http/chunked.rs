//! Walks a chunked request body byte by byte, by the same rules as actix-http's decoder, so
//! that the guard and actix-http always agree on where such a body ends.

/// The most bytes of extensions on one chunk-size line, and of trailers, accepted (actix-http
/// sets no limit; the guard's body timer bounds the time either way).
const MAX_FRAMING_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeFirst,
    SizeRest,
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// Where a chunked body stands after some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// The body goes on.
    More,
    /// The body ended; the bytes after it belong to the next request.
    Done,
    /// The body breaks the chunked framing (or our limits on it).
    Broken,
}

/// A chunked body being walked.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    size: u64,
    /// Bytes of extensions and trailers seen.
    framing: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::SizeFirst,
            size: 0,
            framing: 0,
        }
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl Chunked {
    /// Walks `input`; returns how many bytes of it belong to this body (all of them unless the
    /// body ended or broke inside it; a breaking byte counts as the body's) and where it stands.
    pub(crate) fn walk(&mut self, input: &[u8]) -> (usize, Walk) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Body {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                self.size -= n as u64;
                i += n;
                if self.size == 0 {
                    self.state = State::BodyCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            let next = match (self.state, b) {
                (State::SizeFirst, b) => hex(b).map(|d| {
                    self.size = d;
                    State::SizeRest
                }),
                (State::SizeRest, b'\t' | b' ') => Some(State::SizeLws),
                (State::SizeRest, b';') => Some(State::Extension),
                (State::SizeRest, b'\r') => Some(State::SizeLf),
                (State::SizeRest, b) => hex(b).and_then(|d| {
                    self.size = self.size.checked_mul(16)? + d;
                    Some(State::SizeRest)
                }),
                (State::SizeLws, b'\t' | b' ') => Some(State::SizeLws),
                (State::SizeLws, b';') => Some(State::Extension),
                (State::SizeLws, b'\r') => Some(State::SizeLf),
                (State::SizeLws, _) => None,
                (State::Extension, b'\r') => Some(State::SizeLf),
                (State::Extension, 0x00..=0x08 | 0x0a..=0x1f | 0x7f) => None,
                (State::Extension, _) => self.framing_byte().then_some(State::Extension),
                (State::SizeLf, b'\n') if self.size > 0 => {
                    // Extensions are limited per line, trailers in all.
                    self.framing = 0;
                    Some(State::Body)
                }
                (State::SizeLf, b'\n') => {
                    self.framing = 0;
                    Some(State::EndCr)
                }
                (State::SizeLf, _) => None,
                (State::BodyCr, b'\r') => Some(State::BodyLf),
                (State::BodyLf, b'\n') => Some(State::SizeFirst),
                (State::BodyCr | State::BodyLf, _) => None,
                (State::EndCr, b'\r') => Some(State::EndLf),
                // Any other byte starts a trailer (and is part of it).
                (State::EndCr, _) => self.framing_byte().then_some(State::Trailer),
                (State::Trailer, b'\r') => Some(State::TrailerLf),
                (State::Trailer, _) => self.framing_byte().then_some(State::Trailer),
                (State::TrailerLf, b'\n') => Some(State::EndCr),
                (State::TrailerLf, _) => None,
                (State::EndLf, b'\n') => return (i, Walk::Done),
                (State::EndLf, _) => None,
                (State::Body, _) => unreachable!("handled above"),
            };
            match next {
                Some(state) => self.state = state,
                None => return (i, Walk::Broken),
            }
        }
        (i, Walk::More)
    }

    /// Counts one byte of extensions or trailers; false past the limit.
    fn framing_byte(&mut self) -> bool {
        self.framing += 1;
        self.framing <= MAX_FRAMING_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(body: &[u8], step: usize) -> (usize, Walk) {
        let mut chunked = Chunked::default();
        let mut total = 0;
        for piece in body.chunks(step) {
            let (n, walk) = chunked.walk(piece);
            total += n;
            if walk != Walk::More {
                return (total, walk);
            }
        }
        (total, Walk::More)
    }

    #[test]
    fn bodies_end_where_actix_http_ends_them() {
        let cases: [(&[u8], usize, Walk); 9] = [
            (b"3\r\nabc\r\n0\r\n\r\nNEXT", 13, Walk::Done),
            (b"3;ext=1\r\nabc\r\n0\r\n\r\n", 19, Walk::Done),
            (b"3 \t;x\r\nabc\r\n0\r\nT: 1\r\n\r\nNEXT", 23, Walk::Done),
            (b"00000000000000003\r\nabc\r\n0\r\n\r\n", 29, Walk::Done),
            // A bare LF does not end a trailer for actix-http: it runs to the next CR LF CR LF.
            (
                b"0\r\n\nPOST / HTTP/1.1\r\nHost: x\r\n\r\nX",
                32,
                Walk::Done,
            ),
            (b"3\nabc", 2, Walk::Broken),
            (b"zz\r\n", 1, Walk::Broken),
            (b"ffffffffffffffffff\r\n", 17, Walk::Broken),
            (b"3\r\nabcX", 7, Walk::Broken),
        ];
        for (body, ends, walk) in cases {
            for step in [1, 2, 5, body.len()] {
                assert_eq!(
                    walk_all(body, step),
                    (ends, walk),
                    "{:?} in steps of {step}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn extensions_are_limited_per_line_not_per_body() {
        let mut body = Vec::new();
        for _ in 0..3_000 {
            body.extend_from_slice(b"1;name=a-forty-byte-chunk-extension-value\r\nx\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(walk_all(&body, 4096), (body.len(), Walk::Done));
    }

    #[test]
    fn endless_trailers_break() {
        let mut chunked = Chunked::default();
        assert_eq!(chunked.walk(b"0\r\n"), (3, Walk::More));
        let trailer = vec![b'a'; MAX_FRAMING_BYTES + 1];
        assert_eq!(chunked.walk(&trailer).1, Walk::Broken);
    }
}
