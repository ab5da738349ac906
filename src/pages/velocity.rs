//! A per-client-address brake on failed password attempts (credential stuffing). It
//! slows answers instead of locking: a clinic's staff often share one public address,
//! and one person's typos must not lock out the ward.

use std::net::IpAddr;
use std::time::Duration;

use crate::http::rate::PerAddress;

const STEP: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Failed attempts per address in the current minute.
pub struct Velocity {
    per_minute: u32,
    failures: PerAddress,
}

impl Velocity {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            failures: PerAddress::default(),
        }
    }

    /// How long to hold the next attempt from `ip`: nothing under the limit, then a
    /// growing pause (250 ms per failure over it, at most 5 s).
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let n = self.failures.peek(ip);
        if n > self.per_minute {
            (STEP * (n - self.per_minute)).min(MAX_DELAY)
        } else {
            Duration::ZERO
        }
    }

    /// Counts one failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        self.failures.hit(ip);
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
