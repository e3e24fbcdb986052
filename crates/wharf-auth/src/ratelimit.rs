//! Failed-login rate limiting per user and per client address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failures per key in a fixed window; once a key reaches the limit
/// it is refused until its window ends.
#[derive(Debug)]
pub struct RateLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Most keys tracked; beyond this, expired entries are swept.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    /// `max_failures` within `window` blocks a key for the rest of it.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        RateLimiter {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may try now.
    pub fn allowed(&self, key: &str) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((n, since)) => *n < self.max_failures || since.elapsed() >= self.window,
            None => true,
        }
    }

    /// Records a failure.
    pub fn fail(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = map.entry(key.to_owned()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// Forgets failures of `key` (after a success).
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let r = RateLimiter::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(r.allowed("user:a"));
            r.fail("user:a");
        }
        assert!(!r.allowed("user:a"));
        assert!(r.allowed("user:b"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(r.allowed("user:a"));
        r.fail("user:a");
        assert!(r.allowed("user:a"), "a new window starts from zero");
        r.reset("user:a");
        assert!(r.allowed("user:a"));
    }
}
