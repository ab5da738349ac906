//! Per-client counters over fixed one-minute windows: the shared mechanism behind the
//! own-pages request limit and the password-step velocity brake.
//!
//! Two choices keep it cheap under a flood. IPv6 clients are counted per /64 (one
//! customer's allocation, as every provider hands them out), so rotating through the
//! addresses of a single subnet earns no fresh budget. And the window is one fixed
//! minute for every client: when it ends the whole table is cleared at once, so no
//! call ever walks the table (a per-call sweep under the lock was O(n) per request
//! once the table was full). Within a window at most [`MAX_TRACKED`] clients are
//! counted; beyond that, a new client is reported at the limit-busting count
//! `u32::MAX` — callers refuse or slow it, failing closed rather than growing memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window every counter uses.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked in one window at the most (bounds memory under a flood).
const MAX_TRACKED: usize = 100_000;

/// The key a client is counted under: IPv4 as is, IPv6 by its /64 prefix.
fn client_key(ip: IpAddr) -> u128 {
    match super::client_ip::canonical(ip) {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64 << 64) | 1,
    }
}

/// The counts of the current window and when it began.
struct Table {
    started: Instant,
    counts: HashMap<u128, u32>,
}

/// Events per client in the current minute.
pub struct PerAddress {
    table: Mutex<Table>,
}

impl Default for PerAddress {
    fn default() -> Self {
        Self {
            table: Mutex::new(Table {
                started: Instant::now(),
                counts: HashMap::new(),
            }),
        }
    }
}

impl Table {
    /// Starts a new window when the current one has ended.
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.started) >= WINDOW {
            self.started = now;
            self.counts.clear();
        }
    }
}

impl PerAddress {
    /// Counts one event from `ip`; returns the count in the window and the time left in it.
    pub fn hit(&self, ip: IpAddr) -> (u32, Duration) {
        let Ok(mut t) = self.table.lock() else {
            return (u32::MAX, WINDOW);
        };
        let now = Instant::now();
        t.roll(now);
        let left = WINDOW.saturating_sub(now.duration_since(t.started));
        let full = t.counts.len() >= MAX_TRACKED;
        let n = match t.counts.get_mut(&client_key(ip)) {
            Some(n) => {
                *n = n.saturating_add(1);
                *n
            }
            None if full => u32::MAX,
            None => {
                t.counts.insert(client_key(ip), 1);
                1
            }
        };
        (n, left)
    }

    /// The count in `ip`'s current window, without counting (`u32::MAX` for a client
    /// the full table could not count).
    pub fn peek(&self, ip: IpAddr) -> u32 {
        let Ok(mut t) = self.table.lock() else {
            return u32::MAX;
        };
        t.roll(Instant::now());
        match t.counts.get(&client_key(ip)) {
            Some(n) => *n,
            None if t.counts.len() >= MAX_TRACKED => u32::MAX,
            None => 0,
        }
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

    #[test]
    fn ipv6_clients_share_the_count_of_their_64() {
        let c = PerAddress::default();
        for i in 0..10u16 {
            let ip: IpAddr = format!("2001:db8:1:2:{i:x}::{i:x}").parse().unwrap();
            c.hit(ip);
        }
        assert_eq!(c.peek("2001:db8:1:2::99".parse().unwrap()), 10);
        assert_eq!(c.peek("2001:db8:1:3::1".parse().unwrap()), 0);
        // A mapped IPv4 address is the IPv4 client, not a /64.
        c.hit("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(c.peek("192.0.2.7".parse().unwrap()), 1);
    }

    #[test]
    fn a_full_table_reports_new_clients_over_the_limit_without_growing() {
        let c = PerAddress::default();
        for i in 0..MAX_TRACKED as u32 {
            c.hit(IpAddr::V4(std::net::Ipv4Addr::from(i)));
        }
        let fresh: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(c.hit(fresh).0, u32::MAX);
        assert_eq!(c.peek(fresh), u32::MAX);
        assert_eq!(c.table.lock().unwrap().counts.len(), MAX_TRACKED);
        // Clients already counted keep counting normally.
        assert_eq!(c.hit(IpAddr::V4(std::net::Ipv4Addr::from(5))).0, 2);
    }
}
