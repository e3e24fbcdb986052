#![no_main]
//! The HTTP/1.1 framing guard over arbitrary bytes, delivered in arbitrary
//! pieces and read with arbitrary buffer sizes: never panics, hands out
//! exactly as many bytes as arrived, changes none except by poisoning a
//! header name byte, and does the same however the bytes are split.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use wharf_registry::FramingGuard;

struct Pieces(VecDeque<Vec<u8>>);

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
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

fn through(input: &[u8], cut: usize, read: usize) -> Vec<u8> {
    let pieces = input.chunks(cut.max(1)).map(<[u8]>::to_vec).collect();
    let mut guard = FramingGuard::new(Pieces(pieces));
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut space = vec![0; read.max(1)];
    loop {
        let mut buf = ReadBuf::new(&mut space);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return out,
            Poll::Ready(Ok(())) => out.extend_from_slice(buf.filled()),
            other => panic!("read: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[cut, read], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let whole = through(input, input.len(), 1 << 16);
    assert_eq!(whole.len(), input.len());
    for (a, b) in input.iter().zip(&whole) {
        assert!(a == b || *b == b'@', "changed {a} to {b}");
    }
    assert_eq!(through(input, usize::from(cut), usize::from(read)), whole);
});
