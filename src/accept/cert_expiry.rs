//! When the served certificate stops being valid, so the operator hears about it in
//! time: a warning in the log from [`WARN_BEFORE`] ahead (at start, after each reload
//! and daily), the `vestibule_tls_certificate_expiry_seconds` gauge, and a 503 from
//! `P/health` once it has expired (browsers refuse the site by then anyway).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long before `notAfter` the log starts warning.
pub const WARN_BEFORE: Duration = Duration::from_secs(21 * 86_400);
/// How often the warning is repeated while it applies.
const CHECK_EVERY: Duration = Duration::from_secs(86_400);
/// Marks "no certificate parsed yet" (plain HTTP, or an unparsable leaf).
const UNKNOWN: i64 = i64::MIN;

/// The leaf certificate's `notAfter`, shared by the TLS reloader and the observers.
#[derive(Debug)]
pub struct CertExpiry {
    not_after: AtomicI64,
}

impl Default for CertExpiry {
    fn default() -> Self {
        Self {
            not_after: AtomicI64::new(UNKNOWN),
        }
    }
}

/// `notAfter` of a DER certificate, as Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl CertExpiry {
    /// Records the leaf certificate now being served.
    pub fn update(&self, leaf_der: &[u8]) {
        match not_after(leaf_der) {
            Some(t) => self.not_after.store(t, Ordering::Relaxed),
            None => {
                self.not_after.store(UNKNOWN, Ordering::Relaxed);
                tracing::warn!(
                    "cannot read notAfter of the TLS certificate; its expiry is not monitored"
                );
            }
        }
    }

    /// Seconds until `notAfter` (negative once expired); `None` when unknown.
    pub fn seconds_left(&self) -> Option<i64> {
        match self.not_after.load(Ordering::Relaxed) {
            UNKNOWN => None,
            t => Some(t.saturating_sub(unix_now())),
        }
    }

    /// True only when a known certificate has expired.
    pub fn expired(&self) -> bool {
        self.seconds_left().is_some_and(|s| s <= 0)
    }

    /// Logs an error when expired, a warning within [`WARN_BEFORE`], nothing otherwise.
    pub fn check_and_log(&self) {
        let Some(left) = self.seconds_left() else {
            return;
        };
        let not_after =
            UNIX_EPOCH + Duration::from_secs(self.not_after.load(Ordering::Relaxed).max(0) as u64);
        let not_after = humantime::format_rfc3339_seconds(not_after).to_string();
        if left <= 0 {
            tracing::error!(not_after = %not_after, "the TLS certificate has expired: renew it (browsers refuse this site)");
        } else if left < WARN_BEFORE.as_secs() as i64 {
            tracing::warn!(not_after = %not_after, days_left = left / 86_400, "the TLS certificate expires soon: renew it");
        }
    }

    /// Checks now and then daily, for as long as the gateway runs.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tick.tick().await;
            self.check_and_log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_valid_for(days: i64) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["example.test".to_string()]).unwrap();
        let now = rcgen::date_time_ymd(2000, 1, 1);
        params.not_before = now;
        params.not_after =
            cookie::time::OffsetDateTime::now_utc() + cookie::time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_not_after_of_the_leaf() {
        let e = CertExpiry::default();
        assert_eq!(e.seconds_left(), None);
        assert!(!e.expired());
        e.update(&cert_valid_for(10));
        let left = e.seconds_left().unwrap();
        assert!((9 * 86_400..=10 * 86_400 + 5).contains(&left), "{left}");
        assert!(!e.expired());
    }

    #[test]
    fn an_expired_certificate_is_reported() {
        let e = CertExpiry::default();
        e.update(&cert_valid_for(-1));
        assert!(e.expired());
        e.update(b"not a certificate");
        assert_eq!(e.seconds_left(), None);
    }
}
