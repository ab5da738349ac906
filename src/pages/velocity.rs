//! A per-client-address brake on failed password attempts (credential stuffing). It
//! slows answers instead of locking: a clinic's staff often share one public address,
//! and one person's typos must not lock out the ward.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);
const MAX_TRACKED: usize = 100_000;

/// Failed attempts per address in the current minute.
pub struct Velocity {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Velocity {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, seen: Mutex::new(HashMap::new()) }
    }

    /// How long to hold the next attempt from `ip`: nothing under the limit, then a
    /// growing pause (250 ms per failure over it, at most 5 s).
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let Ok(seen) = self.seen.lock() else { return Duration::ZERO };
        match seen.get(&ip) {
            Some((start, n)) if start.elapsed() < WINDOW && *n > self.per_minute => {
                (STEP * (*n - self.per_minute)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Counts one failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let Ok(mut seen) = self.seen.lock() else { return };
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let e = seen.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_down_only_above_the_limit() {
        let v = Velocity::new(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            v.failed(ip);
        }
        assert_eq!(v.delay(ip), Duration::ZERO);
        v.failed(ip);
        v.failed(ip);
        assert_eq!(v.delay(ip), STEP * 2);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(v.delay(other), Duration::ZERO);
    }
}
