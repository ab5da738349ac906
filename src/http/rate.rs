//! Per-client-address counters over a fixed one-minute window: the shared mechanism
//! behind the own-pages request limit and the password-step velocity brake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window every counter uses.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked before stale windows are swept (bounds memory under a flood).
const MAX_TRACKED: usize = 100_000;

/// Events per address in the current minute.
#[derive(Default)]
pub struct PerAddress {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl PerAddress {
    /// Counts one event from `ip`; returns the count in its window and the time left in it.
    pub fn hit(&self, ip: IpAddr) -> (u32, Duration) {
        let Ok(mut seen) = self.seen.lock() else {
            return (0, Duration::ZERO);
        };
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let e = seen.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
        (e.1, WINDOW.saturating_sub(e.0.elapsed()))
    }

    /// The count in `ip`'s current window, without counting.
    pub fn peek(&self, ip: IpAddr) -> u32 {
        let Ok(seen) = self.seen.lock() else { return 0 };
        seen.get(&ip)
            .filter(|(start, _)| start.elapsed() < WINDOW)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address() {
        let c = PerAddress::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(c.hit(a).0, 1);
        assert_eq!(c.hit(a).0, 2);
        assert_eq!(c.peek(a), 2);
        assert_eq!(c.peek(b), 0);
        assert!(c.hit(b).1 <= WINDOW);
    }
}
