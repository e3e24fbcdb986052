//! HTTP/1.1 request framing checks that hyper leaves to the application.
//!
//! hyper answers a request carrying both `Content-Length` and
//! `Transfer-Encoding` by following `Transfer-Encoding` and closing the
//! connection afterwards, and it accepts a `Content-Length` repeated with
//! the same value. RFC 9112 (section 6.3) allows both, but such requests are
//! the raw material of request smuggling, and no honest client sends them.
//! Wharf refuses them with `400 Bad Request`.
//!
//! hyper removes the `Content-Length` of such a request before the service
//! sees it, so the check happens below hyper: [`FramingGuard`] wraps a
//! connection, follows the message framing of the bytes it hands to hyper
//! (request heads, then bodies by `Content-Length` or chunked coding, as
//! hyper frames them), and holds each request head back until it is
//! complete. A head with conflicting framing has the first byte of an
//! offending header name replaced by a byte no header name may contain, so
//! hyper's own parser refuses the request with 400 and closes the
//! connection. Nothing else is ever changed: bodies pass through uncopied
//! where possible, and on anything the guard does not follow (an HTTP/2
//! preface, a head hyper will refuse anyway) it steps aside for the rest of
//! the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most header lines a head may have (hyper refuses more than 100).
const MAX_HEADERS: usize = 128;
/// A head longer than this is handed to hyper unchecked (it refuses heads
/// past its buffer size with 431 anyway).
const MAX_HEAD: usize = 256 * 1024 + 1;
/// Bytes read at a time while looking for framing: a little at first (a
/// connection that trickles its head costs little), more once a read fills
/// that.
const FIRST_READ: usize = 2 * 1024;
const READ_SIZE: usize = 16 * 1024;
/// What an offending header name's first byte becomes: not a token byte.
const POISON: u8 = b'@';

/// Where the guard is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At (or inside) a request head.
    Head,
    /// Inside a body of known length: this many bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not following the stream any more: everything passes.
    Passthrough,
}

impl State {
    /// The state once `n` bytes of body data (no more than are left) have
    /// gone by; other states stay.
    fn after_data(self, n: u64) -> State {
        match self {
            State::Body(left) => after_body(left - n),
            State::Chunked(Chunk::Data(left)) if left == n => State::Chunked(Chunk::DataCr),
            State::Chunked(Chunk::Data(left)) => State::Chunked(Chunk::Data(left - n)),
            other => other,
        }
    }
}

/// Chunked-coding states, as hyper's decoder has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    LengthAndChunked,
    RepeatedLength,
}

/// A connection wrapper that refuses HTTP/1.1 requests with conflicting
/// framing: `Content-Length` together with `Transfer-Encoding`, or
/// `Content-Length` more than once. hyper answers them with 400 and closes
/// the connection. Writes pass straight through; HTTP/2 passes untouched.
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// # let service = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// # });
/// let (stream, _) = listener.accept().await?;
/// let io = hyper_util::rt::TokioIo::new(wharf_registry::FramingGuard::new(stream));
/// hyper::server::conn::http1::Builder::new().serve_connection(io, service).await.ok();
/// # Ok(()) }
/// ```
pub struct FramingGuard<T> {
    io: T,
    /// Bytes read from `io`: the first `sent` were handed out (and are
    /// kept only while the head they start is incomplete), up to `ready`
    /// may be.
    buf: BytesMut,
    sent: usize,
    ready: usize,
    /// Where the incomplete head being collected starts in `buf`.
    head: Option<usize>,
    /// How much of that head the last look for its end covered.
    head_seen: usize,
    state: State,
    /// Where reads land while looking for framing (allocated on first use).
    scratch: Option<Box<[u8]>>,
    /// Bytes that went through `buf` rather than straight to the caller.
    buffered: u64,
}

impl<T> FramingGuard<T> {
    /// Wraps a connection (a TCP stream, or a TLS stream over one).
    pub fn new(io: T) -> Self {
        FramingGuard {
            io,
            buf: BytesMut::new(),
            sent: 0,
            ready: 0,
            head: None,
            head_seen: 0,
            state: State::Head,
            scratch: None,
            buffered: 0,
        }
    }

    /// Follows the bytes not yet followed as far as they go, marking them
    /// ready to hand out.
    fn scan(&mut self) {
        loop {
            match self.state {
                State::Head => {
                    if !self.scan_head() {
                        return;
                    }
                }
                _ if self.ready >= self.buf.len() => return,
                State::Passthrough => self.ready = self.buf.len(),
                State::Body(left) | State::Chunked(Chunk::Data(left)) => {
                    let n = left.min((self.buf.len() - self.ready) as u64);
                    self.ready += n as usize;
                    self.state = self.state.after_data(n);
                }
                State::Chunked(chunk) => {
                    let byte = self.buf[self.ready];
                    self.ready += 1;
                    self.state = match chunk_step(chunk, byte) {
                        Some(Chunk::Data(0)) => State::Head,
                        Some(next) => State::Chunked(next),
                        // hyper refuses the body and ends the connection.
                        None => State::Passthrough,
                    };
                }
            }
        }
    }

    /// Collects the head that starts at `ready`; once it is complete,
    /// checks it, marks it ready and moves to its body. Its first line goes
    /// out as it arrives (nothing in it is ever changed, and a first byte
    /// tells HTTP/1 from HTTP/2). `false` while more bytes are needed.
    fn scan_head(&mut self) -> bool {
        let start = *self.head.get_or_insert(self.ready);
        // (`ready` past `start` is as far as the first line is known to go.)
        let from = self.ready.max(start);
        self.ready = self.buf[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.buf.len(), |i| from + i);
        // A head ends with a line feed: parse only when one has arrived.
        let from = start + self.head_seen;
        let new_line = self.buf[from..].contains(&b'\n');
        self.head_seen = self.buf.len() - start;
        if !new_line && self.head_seen <= MAX_HEAD {
            return false;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let (len, next, poison) = match req.parse(&self.buf[start..]) {
            Ok(httparse::Status::Complete(len)) => {
                let base = self.buf[start..].as_ptr() as usize;
                let (next, poison) = framing(&req);
                let poison = poison.map(|(at, why)| {
                    tracing::debug!(conflict = ?why, "refusing a request with conflicting framing");
                    start + (at.as_ptr() as usize - base)
                });
                (len, next, poison)
            }
            Ok(httparse::Status::Partial) if self.head_seen <= MAX_HEAD => return false,
            // Too long, or not a request hyper will take (an HTTP/2
            // preface, a malformed head): hyper decides from here on.
            Ok(httparse::Status::Partial) | Err(_) => {
                (self.buf.len() - start, State::Passthrough, None)
            }
        };
        // Header names come after the first line, which is all that went
        // out early.
        if let Some(at) = poison.filter(|&at| at >= self.sent) {
            self.buf[at] = POISON;
        }
        self.ready = start + len;
        self.head = None;
        self.head_seen = 0;
        self.state = next;
        true
    }

    /// Drops what was handed out and is not kept for an incomplete head.
    fn compact(&mut self) {
        let drop = self.head.map_or(self.sent, |h| h.min(self.sent));
        if drop > 0 {
            self.buf.advance(drop);
            self.sent -= drop;
            self.ready -= drop;
            self.head = self.head.map(|h| h - drop);
        }
    }
}

/// The state after a head: its body's framing, as hyper reads it, and the
/// header name to poison when the framing conflicts.
fn framing<'h>(req: &httparse::Request<'h, '_>) -> (State, Option<(&'h str, Conflict)>) {
    if req.method == Some("CONNECT") {
        return (State::Passthrough, None);
    }
    let mut lengths = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    let mut codings = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let first_length = lengths.next();
    if let Some(te) = codings.clone().next()
        && first_length.is_some()
    {
        return (
            State::Passthrough,
            Some((te.name, Conflict::LengthAndChunked)),
        );
    }
    if let Some(second) = lengths.next() {
        return (
            State::Passthrough,
            Some((second.name, Conflict::RepeatedLength)),
        );
    }
    if let Some(last) = codings.next_back() {
        // hyper takes the last Transfer-Encoding line and refuses a body
        // whose final coding is not chunked (and any on HTTP/1.0).
        let chunked = req.version == Some(1)
            && last
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        let next = if chunked {
            State::Chunked(Chunk::Start)
        } else {
            State::Passthrough
        };
        return (next, None);
    }
    match first_length {
        None => (State::Head, None),
        Some(h) => match parse_length(h.value) {
            Some(n) => (after_body(n), None),
            None => (State::Passthrough, None),
        },
    }
}

/// A Content-Length value as hyper accepts it: decimal digits only.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn after_body(left: u64) -> State {
    if left == 0 {
        State::Head
    } else {
        State::Body(left)
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// One byte of chunked framing; `None` where hyper refuses the body.
/// `Some(Data(0))` means the body ended.
fn chunk_step(state: Chunk, b: u8) -> Option<Chunk> {
    let grow = |size: u64, b: u8| size.checked_mul(16)?.checked_add(hex(b)?);
    Some(match state {
        Chunk::Start => Chunk::Size(grow(0, b)?),
        Chunk::Size(size) => match b {
            b'\t' | b' ' => Chunk::SizeLws(size),
            b';' => Chunk::Extension(size),
            b'\r' => Chunk::SizeLf(size),
            _ => Chunk::Size(grow(size, b)?),
        },
        Chunk::SizeLws(size) => match b {
            b'\t' | b' ' => Chunk::SizeLws(size),
            b';' => Chunk::Extension(size),
            b'\r' => Chunk::SizeLf(size),
            _ => return None,
        },
        Chunk::Extension(size) => match b {
            b'\r' => Chunk::SizeLf(size),
            b'\n' => return None,
            _ => Chunk::Extension(size),
        },
        Chunk::SizeLf(size) => match (b, size) {
            (b'\n', 0) => Chunk::EndCr,
            (b'\n', size) => Chunk::Data(size),
            _ => return None,
        },
        // Data is counted, not stepped through; a zero-length data state
        // never lasts.
        Chunk::Data(_) => return None,
        Chunk::DataCr => (b == b'\r').then_some(Chunk::DataLf)?,
        Chunk::DataLf => (b == b'\n').then_some(Chunk::Start)?,
        Chunk::EndCr => match b {
            b'\r' => Chunk::EndLf,
            _ => Chunk::Trailer,
        },
        Chunk::EndLf => (b == b'\n').then_some(Chunk::Data(0))?,
        Chunk::Trailer => match b {
            b'\r' => Chunk::TrailerLf,
            _ => Chunk::Trailer,
        },
        Chunk::TrailerLf => (b == b'\n').then_some(Chunk::EndCr)?,
    })
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready > this.sent {
                let n = (this.ready - this.sent).min(out.remaining());
                out.put_slice(&this.buf[this.sent..this.sent + n]);
                this.sent += n;
                this.compact();
                return Poll::Ready(Ok(()));
            }
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Nothing buffered inside a body that outlasts the caller's
            // buffer (or after stepping aside): read straight into it.
            if this.buf.is_empty() {
                let room = out.remaining() as u64;
                let direct = match this.state {
                    State::Passthrough => true,
                    State::Body(left) | State::Chunked(Chunk::Data(left)) => left >= room,
                    _ => false,
                };
                if direct {
                    let before = out.filled().len();
                    ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
                    let n = (out.filled().len() - before) as u64;
                    this.state = this.state.after_data(n);
                    return Poll::Ready(Ok(()));
                }
            }
            this.scan();
            if this.ready > this.sent {
                continue;
            }
            // Read more to find the framing.
            let scratch = this
                .scratch
                .get_or_insert_with(|| vec![0; FIRST_READ].into_boxed_slice());
            let mut more = ReadBuf::new(scratch);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut more))?;
            let filled = more.filled().len();
            if filled == FIRST_READ && scratch.len() == FIRST_READ {
                this.buf.extend_from_slice(&scratch[..filled]);
                this.buffered += filled as u64;
                this.scratch = Some(vec![0; READ_SIZE].into_boxed_slice());
                continue;
            }
            let more = &scratch[..filled];
            if more.is_empty() {
                // The peer stopped sending: hand over what is held (a
                // partial head) and let hyper see the end.
                this.head = None;
                if this.buf.len() == this.sent {
                    this.compact();
                    return Poll::Ready(Ok(()));
                }
                this.state = State::Passthrough;
                this.ready = this.buf.len();
                continue;
            }
            this.buf.extend_from_slice(more);
            this.buffered += more.len() as u64;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// A connection that delivers `pieces`, one read each at most.
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(piece) = self.0.front_mut() {
                let n = piece.len().min(out.remaining());
                out.put_slice(&piece[..n]);
                piece.drain(..n);
                if piece.is_empty() {
                    self.0.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Everything `input` becomes through the guard, delivered in pieces
    /// of `cuts` sizes and read with buffers of `reads` sizes.
    fn through(input: &[u8], cuts: &[usize], reads: &[usize]) -> (Vec<u8>, State) {
        let mut pieces = VecDeque::new();
        let mut rest = input;
        for &c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(c.clamp(1, rest.len()));
            pieces.push_back(a.to_vec());
            rest = b;
        }
        let mut guard = FramingGuard::new(Pieces(pieces));
        let mut out = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for &size in reads.iter().cycle() {
            let mut space = vec![0; size.max(1)];
            let mut buf = ReadBuf::new(&mut space);
            match Pin::new(&mut guard).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
                other => panic!("read: {other:?}"),
            }
        }
        (out, guard.state)
    }

    fn whole(input: &[u8]) -> Vec<u8> {
        through(input, &[input.len().max(1)], &[64 * 1024]).0
    }

    /// Positions where `out` differs from `input`, which it must match in
    /// length.
    fn changed(input: &[u8], out: &[u8]) -> Vec<usize> {
        assert_eq!(input.len(), out.len());
        (0..input.len()).filter(|&i| input[i] != out[i]).collect()
    }

    const TRAP: &[u8] =
        b"PUT /v2/x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[derive(Debug, Clone)]
    enum Req {
        Get,
        Sized(Vec<u8>),
        Chunked(Vec<Vec<u8>>, bool, bool),
    }

    fn encode(reqs: &[Req]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reqs {
            match r {
                Req::Get => out.extend_from_slice(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"),
                Req::Sized(body) => {
                    out.extend_from_slice(
                        format!(
                            "PUT /v2/a/blobs/uploads/1 HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(body);
                }
                Req::Chunked(chunks, ext, trailers) => {
                    out.extend_from_slice(
                        b"PATCH /v2/a/blobs/uploads/1 HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                    );
                    for c in chunks.iter().filter(|c| !c.is_empty()) {
                        let ext = if *ext { "  ;a=b" } else { "" };
                        out.extend_from_slice(format!("{:X}{ext}\r\n", c.len()).as_bytes());
                        out.extend_from_slice(c);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    if *trailers {
                        out.extend_from_slice(b"X-T: 1\r\nX-U: 2\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            Just(TRAP.to_vec()),
            Just(b"\r\n\r\n0\r\n\r\n".to_vec()),
        ]
    }

    fn req() -> impl Strategy<Value = Req> {
        prop_oneof![
            Just(Req::Get),
            body().prop_map(Req::Sized),
            (
                proptest::collection::vec(body(), 0..4),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(c, e, t)| Req::Chunked(c, e, t)),
        ]
    }

    proptest! {
        #[test]
        fn well_framed_requests_pass_unchanged(
            reqs in proptest::collection::vec(req(), 1..6),
            cuts in proptest::collection::vec(1usize..100, 1..8),
            reads in proptest::collection::vec(1usize..200, 1..8),
        ) {
            let input = encode(&reqs);
            let (out, state) = through(&input, &cuts, &reads);
            prop_assert_eq!(out, input);
            prop_assert_eq!(state, State::Head);
        }
    }

    #[test]
    fn length_and_chunked_coding_together_are_poisoned_in_either_order() {
        for head in [
            &b"POST /u HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            &b"POST /u HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n"[..],
        ] {
            let mut input = head.to_vec();
            input.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
            let out = whole(&input);
            let at = input
                .windows(17)
                .position(|w| w.eq_ignore_ascii_case(b"transfer-encoding"))
                .unwrap_or_default();
            assert_eq!(changed(&input, &out), vec![at]);
            assert_eq!(out[at], POISON);
            // hyper's parser refuses the result.
            let mut headers = [httparse::EMPTY_HEADER; 8];
            assert!(httparse::Request::new(&mut headers).parse(&out).is_err());
        }
    }

    #[test]
    fn a_repeated_length_is_poisoned_even_with_the_same_value() {
        let input =
            b"PUT /u HTTP/1.1\r\nContent-Length: 5\r\nX: y\r\nContent-Length: 5\r\n\r\nhello";
        let out = whole(input);
        let second = input.len() - 5 - 4 - "Content-Length: 5".len();
        assert_eq!(changed(input, &out), vec![second]);
        // A single length is not.
        let one = b"PUT /u HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(whole(one), one);
    }

    #[test]
    fn a_conflict_behind_bodies_is_found_however_the_bytes_arrive() {
        let good = encode(&[
            Req::Sized(TRAP.to_vec()),
            Req::Chunked(vec![TRAP.to_vec(), b"abc".to_vec()], true, true),
            Req::Get,
        ]);
        let mut input = good.clone();
        input.extend_from_slice(TRAP);
        input.extend_from_slice(b"x");
        let at = good.len()
            + TRAP
                .windows(9)
                .position(|w| w == b"Transfer-")
                .unwrap_or_default();
        for cut in [1, 2, 3, 7, 64, 4096] {
            for read in [1, 5, 100, 8192] {
                let (out, _) = through(&input, &[cut], &[read]);
                assert_eq!(changed(&input, &out), vec![at], "cut {cut}, read {read}");
            }
        }
    }

    #[test]
    fn what_the_guard_does_not_follow_passes_through() {
        // An HTTP/2 preface and frames.
        let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        h2.extend_from_slice(TRAP);
        assert_eq!(whole(&h2), h2);
        let (out, state) = through(&h2, &[3], &[7]);
        assert_eq!((out, state), (h2.clone(), State::Passthrough));
        // A malformed chunked body: hyper refuses it and closes; the guard
        // steps aside instead of guessing.
        let mut bad = b"PATCH /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
        bad.extend_from_slice(TRAP);
        assert_eq!(through(&bad, &[4], &[9]), (bad.clone(), State::Passthrough));
        // A head past the size limit, and one cut short by the peer.
        let long = [
            b"GET / HTTP/1.1\r\nX: ".as_slice(),
            &vec![b'a'; MAX_HEAD + 10],
        ]
        .concat();
        assert_eq!(through(&long, &[1000], &[4096]).0, long);
        let short = b"GET / HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(through(short, &[2], &[3]).0, short);
    }

    #[test]
    fn large_bodies_are_read_straight_into_the_callers_buffer() {
        let body = vec![7u8; 1 << 20];
        let mut input =
            format!("PUT /u HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(&body);
        let mut pieces = VecDeque::new();
        pieces.push_back(input[..100].to_vec());
        for c in input[100..].chunks(64 * 1024) {
            pieces.push_back(c.to_vec());
        }
        let mut guard = FramingGuard::new(Pieces(pieces));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            let mut space = vec![0; 64 * 1024];
            let mut buf = ReadBuf::new(&mut space);
            assert!(Pin::new(&mut guard).poll_read(&mut cx, &mut buf).is_ready());
            if buf.filled().is_empty() {
                break;
            }
            out.extend_from_slice(buf.filled());
        }
        assert_eq!(out, input);
        // Only the head's piece and the body's last read's worth went
        // through the guard's own buffer.
        assert!(guard.buffered <= 100 + 64 * 1024, "{}", guard.buffered);
        assert_eq!(guard.state, State::Head);
    }
}
