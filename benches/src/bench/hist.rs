//! A latency histogram with log-linear buckets (HDR-style): 64 linear
//! sub-buckets per power of two, so any recorded value is reported within
//! about 1.6 % of its true value, from nanoseconds to hours, in 30 KiB.

use std::time::Duration;

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

/// Latencies in nanoseconds.
#[derive(Clone)]
pub(crate) struct Hist {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = e - SUB_BITS;
    let sub = (v >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The midpoint of a bucket.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / SUB;
    let sub = (i - SUB) % SUB;
    let low = (SUB + sub) << shift;
    low + ((1u64 << shift) >> 1)
}

impl Hist {
    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    pub(crate) fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max as f64 / 1e6);
        }
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let v = value(i).clamp(self.min, self.max);
                return Some(v as f64 / 1e6);
            }
        }
        Some(self.max as f64 / 1e6)
    }

    pub(crate) fn mean_ms(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for v in (0..64).chain((6..60).flat_map(|e| [1u64 << e, (1 << e) + 1, (3 << e) / 2])) {
            let i = index(v);
            assert!(i >= last, "{v}");
            last = i;
            let back = value(i) as f64;
            assert!(
                (back - v as f64).abs() <= v as f64 * 0.016 + 1.0,
                "{v} {back}"
            );
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        assert!((p50 - 0.5).abs() < 0.01, "{p50}");
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((p99 - 0.99).abs() < 0.02, "{p99}");
        assert_eq!(h.quantile_ms(1.0), Some(1.0));
        assert_eq!(h.count(), 1000);
    }
}
