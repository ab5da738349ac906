//! Wall-clock time for the whole gateway, in Unix milliseconds. Lives at the bottom so
//! that every layer can read it without importing the wiring (`app`), and behind the
//! [`Clock`] trait so the sign-in service can be driven by a fake clock in tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now". The real one is [`SystemClock`]; tests pass a fake.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it). The hot
/// path calls this directly: no indirection where nothing is injected.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_reads_the_wall_clock() {
        let a = now_ms();
        let b = SystemClock.now_ms();
        assert!(a > 1_600_000_000_000 && b >= a);
    }
}
