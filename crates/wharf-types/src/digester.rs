//! Streaming hashing and verification.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use sha2::Digest as _;

use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, OciError};

/// Incremental hasher producing a [`Digest`].
///
/// Uses the `sha2` crate, which selects SHA-NI / ARMv8 SHA instructions at
/// run time where the CPU has them.
///
/// ```
/// use bytes::Bytes;
/// use wharf_types::{Algorithm, Digest, Digester};
///
/// let mut d = Digester::new(Algorithm::Sha256);
/// d.update(b"hello ");
/// d.update_bytes(&Bytes::from_static(b"world"));
/// assert_eq!(d.len(), 11);
/// assert_eq!(d.finish(), Digest::sha256(b"hello world"));
/// ```
#[derive(Clone)]
pub struct Digester {
    state: State,
    len: u64,
}

#[derive(Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Digester {
    /// A hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
        };
        Digester { state, len: 0 }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
        self.len += data.len() as u64;
    }

    /// Feeds one chunk of a body.
    pub fn update_bytes(&mut self, chunk: &Bytes) {
        self.update(chunk);
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed so far, leaving the hasher usable.
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }

    /// The hasher's internal state, so hashing can resume in another
    /// process (an upload continued after a restart or on another node).
    ///
    /// ```
    /// use wharf_types::{Algorithm, Digest, Digester};
    ///
    /// let mut d = Digester::new(Algorithm::Sha256);
    /// d.update(b"first chunk, ");
    /// let saved = d.save_state();
    /// let mut resumed = Digester::restore(&saved).unwrap();
    /// resumed.update(b"second chunk");
    /// assert_eq!(resumed.finish(), Digest::sha256(b"first chunk, second chunk"));
    /// ```
    pub fn save_state(&self) -> DigesterState {
        use sha2::digest::common::hazmat::SerializableState;
        let bytes = match &self.state {
            State::Sha256(h) => h.serialize().to_vec(),
            State::Sha512(h) => h.serialize().to_vec(),
        };
        DigesterState {
            algorithm: self.algorithm(),
            len: self.len,
            bytes,
        }
    }

    /// Rebuilds a hasher from [`Digester::save_state`].
    pub fn restore(saved: &DigesterState) -> Result<Self, StateError> {
        use sha2::digest::common::hazmat::SerializableState;
        fn load<H: SerializableState>(bytes: &[u8]) -> Result<H, StateError> {
            let array = bytes.try_into().map_err(|_| StateError)?;
            H::deserialize(array).map_err(|_| StateError)
        }
        let state = match saved.algorithm {
            Algorithm::Sha256 => State::Sha256(load(&saved.bytes)?),
            Algorithm::Sha512 => State::Sha512(load(&saved.bytes)?),
        };
        Ok(Digester {
            state,
            len: saved.len,
        })
    }

    /// Finishes hashing.
    pub fn finish(self) -> Digest {
        let result = match self.state {
            State::Sha256(h) => Digest::from_bytes(Algorithm::Sha256, &h.finalize()),
            State::Sha512(h) => Digest::from_bytes(Algorithm::Sha512, &h.finalize()),
        };
        result.unwrap_or_else(|_| unreachable!("hash output length matches its algorithm"))
    }
}

/// A saved hashing state (see [`Digester::save_state`]). Serializes with
/// serde; the bytes are the `sha2` crate's state encoding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigesterState {
    /// The algorithm.
    #[serde(with = "algorithm_name")]
    pub algorithm: Algorithm,
    /// Bytes hashed so far.
    pub len: u64,
    /// The hash function's internal state.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

/// A saved hashing state could not be restored (corrupt or from another version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("saved hash state is corrupt")]
pub struct StateError;

mod algorithm_name {
    use crate::digest::Algorithm;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(a: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match &*name {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(serde::de::Error::custom(format!(
                "unknown algorithm {other:?}"
            ))),
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(&*text).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digester")
            .field("algorithm", &self.algorithm())
            .field("len", &self.len)
            .finish()
    }
}

/// Content did not match what the client said it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bytes hash to another digest.
    #[error("content digest {actual} does not match expected {expected}")]
    DigestMismatch {
        /// What the client declared.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The byte count differs from the declared size.
    #[error("content size {actual} does not match expected {expected}")]
    SizeMismatch {
        /// What the client declared.
        expected: u64,
        /// What arrived (or the count at which the stream overran it).
        actual: u64,
    },
}

impl OciError for VerifyError {
    fn code(&self) -> ErrorCode {
        match self {
            VerifyError::DigestMismatch { .. } => ErrorCode::DigestInvalid,
            VerifyError::SizeMismatch { .. } => ErrorCode::SizeInvalid,
        }
    }
}

/// Checks a finished hash against the expectation.
fn check(digester: Digester, expected: &Digest, size: Option<u64>) -> Result<(), VerifyError> {
    if let Some(expected_size) = size
        && digester.len() != expected_size
    {
        return Err(VerifyError::SizeMismatch {
            expected: expected_size,
            actual: digester.len(),
        });
    }
    let actual = digester.finish();
    if &actual != expected {
        return Err(VerifyError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// An [`io::Write`] adapter that hashes everything written through it and
/// checks the result against an expected digest (and optionally a size).
///
/// ```
/// use std::io::Write;
/// use wharf_types::{Digest, VerifyingWriter};
///
/// let expected = Digest::sha256(b"layer bytes");
/// let mut w = VerifyingWriter::new(Vec::new(), expected);
/// w.write_all(b"layer ").unwrap();
/// w.write_all(b"bytes").unwrap();
/// let inner = w.finish().unwrap();
/// assert_eq!(inner, b"layer bytes");
/// ```
#[derive(Debug)]
pub struct VerifyingWriter<W> {
    inner: W,
    digester: Digester,
    expected: Digest,
    size: Option<u64>,
}

impl<W: io::Write> VerifyingWriter<W> {
    /// Wraps `inner`, expecting content that hashes to `expected`.
    pub fn new(inner: W, expected: Digest) -> Self {
        VerifyingWriter {
            inner,
            digester: Digester::new(expected.algorithm()),
            expected,
            size: None,
        }
    }

    /// Also require exactly `size` bytes.
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.digester.len()
    }

    /// Flushes and verifies; returns the inner writer only when the content matched.
    pub fn finish(mut self) -> Result<W, VerifyError> {
        // A flush failure is surfaced by the caller's own I/O; verification is about content.
        let _ = self.inner.flush();
        check(self.digester, &self.expected, self.size)?;
        Ok(self.inner)
    }
}

impl<W: io::Write> io::Write for VerifyingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.size
            && self.digester.len() + buf.len() as u64 > limit
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                VerifyError::SizeMismatch {
                    expected: limit,
                    actual: self.digester.len() + buf.len() as u64,
                },
            ));
        }
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A stream adapter that passes `Bytes` chunks through, hashing them, and
/// ends with an error instead of a clean end when the content does not match.
///
/// Consumers that commit content only after the stream ended cleanly thereby
/// never commit unverified bytes. With a size set, the stream fails as soon as
/// it overruns the size, without waiting for the end.
///
/// ```
/// use bytes::Bytes;
/// use futures::{executor::block_on, stream, StreamExt, TryStreamExt};
/// use wharf_types::{Digest, VerifyError, VerifyingStream};
///
/// let chunks = vec![Ok::<_, VerifyError>(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))];
/// let good = VerifyingStream::new(stream::iter(chunks.clone()), Digest::sha256(b"abc"));
/// assert_eq!(block_on(good.try_collect::<Vec<_>>()).unwrap().len(), 2);
///
/// let bad = VerifyingStream::new(stream::iter(chunks), Digest::sha256(b"xyz"));
/// assert!(block_on(bad.try_collect::<Vec<_>>()).is_err());
/// ```
#[derive(Debug)]
pub struct VerifyingStream<S> {
    inner: S,
    digester: Option<Digester>,
    expected: Digest,
    size: Option<u64>,
}

impl<S> VerifyingStream<S> {
    /// Wraps `inner`, expecting content that hashes to `expected`.
    pub fn new(inner: S, expected: Digest) -> Self {
        VerifyingStream {
            digester: Some(Digester::new(expected.algorithm())),
            inner,
            expected,
            size: None,
        }
    }

    /// Also require exactly `size` bytes.
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }
}

impl<S, E> Stream for VerifyingStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: From<VerifyError>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(digester) = this.digester.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                digester.update(&chunk);
                if let Some(limit) = this.size
                    && digester.len() > limit
                {
                    let actual = digester.len();
                    this.digester = None;
                    return Poll::Ready(Some(Err(VerifyError::SizeMismatch {
                        expected: limit,
                        actual,
                    }
                    .into())));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.digester = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let digester = this.digester.take().unwrap_or_else(|| unreachable!());
                match check(digester, &this.expected, this.size) {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e.into()))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, executor::block_on, stream};
    use std::io::Write;

    #[test]
    fn chunked_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut d = Digester::new(alg);
            for chunk in data.chunks(777) {
                d.update(chunk);
            }
            assert_eq!(d.len(), data.len() as u64);
            assert_eq!(d.current(), Digest::compute(alg, &data));
            assert_eq!(d.finish(), Digest::compute(alg, &data));
        }
    }

    #[test]
    fn state_round_trips_through_json_mid_block() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for cut in [0, 1, 63, 64, 65, 127, 128, 129, 5000] {
                let mut d = Digester::new(alg);
                d.update(&data[..cut]);
                let json = serde_json::to_string(&d.save_state()).unwrap();
                let saved: DigesterState = serde_json::from_str(&json).unwrap();
                let mut resumed = Digester::restore(&saved).unwrap();
                assert_eq!(resumed.len(), cut as u64);
                resumed.update(&data[cut..]);
                assert_eq!(
                    resumed.finish(),
                    Digest::compute(alg, &data),
                    "{alg} cut {cut}"
                );
            }
        }
        let mut bad = Digester::new(Algorithm::Sha256).save_state();
        bad.bytes.pop();
        assert_eq!(Digester::restore(&bad).unwrap_err(), StateError);
        bad.algorithm = Algorithm::Sha512;
        assert!(Digester::restore(&bad).is_err());
    }

    #[test]
    fn writer_rejects_wrong_content_and_overrun() {
        let mut w = VerifyingWriter::new(Vec::new(), Digest::sha256(b"abc"));
        w.write_all(b"abd").unwrap();
        assert!(matches!(
            w.finish(),
            Err(VerifyError::DigestMismatch { .. })
        ));

        let mut w = VerifyingWriter::new(Vec::new(), Digest::sha256(b"abc")).with_size(3);
        assert!(w.write_all(b"abcd").is_err());
        assert_eq!(w.written(), 0);

        let mut w = VerifyingWriter::new(Vec::new(), Digest::sha256(b"abc")).with_size(4);
        w.write_all(b"abc").unwrap();
        assert!(matches!(
            w.finish(),
            Err(VerifyError::SizeMismatch {
                expected: 4,
                actual: 3
            })
        ));
    }

    fn chunks(parts: &[&'static [u8]]) -> Vec<Result<Bytes, VerifyError>> {
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect()
    }

    #[test]
    fn stream_ends_cleanly_only_on_match() {
        let s = VerifyingStream::new(stream::iter(chunks(&[b"a", b"bc"])), Digest::sha256(b"abc"))
            .with_size(3);
        let items: Vec<_> = block_on(s.collect());
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));

        let s = VerifyingStream::new(stream::iter(chunks(&[b"a", b"bd"])), Digest::sha256(b"abc"));
        let items: Vec<_> = block_on(s.collect());
        assert_eq!(items.len(), 3);
        assert!(matches!(items[2], Err(VerifyError::DigestMismatch { .. })));
    }

    #[test]
    fn stream_fails_early_on_overrun_and_then_ends() {
        let s = VerifyingStream::new(
            stream::iter(chunks(&[b"ab", b"cd", b"ef"])),
            Digest::sha256(b"abc"),
        )
        .with_size(3);
        let items: Vec<_> = block_on(s.collect());
        assert_eq!(items.len(), 2);
        assert!(matches!(
            items[1],
            Err(VerifyError::SizeMismatch {
                expected: 3,
                actual: 4
            })
        ));
    }
}
