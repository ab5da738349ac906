//! Prometheus metrics for `P/metrics`.
//!
//! Built on the `metrics` facade with `metrics-exporter-prometheus` used only as a
//! renderer (no HTTP listener of its own): the gateway serves the text itself, behind
//! its own access check. The recorder is local to the [`App`](crate::app::App), not
//! installed globally, so several gateways in one process (tests) never share counters.
//!
//! Every handle is registered once here, with every label value it can ever have: on
//! the request path an increment is one atomic add and a histogram observation one
//! lock-free push — no key lookup and no label formatting. Labels are bounded enums;
//! a username or a path is never a label.

pub mod store;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::http::client_ip;

/// Upstream response times: from a few milliseconds to the longest sensible timeout.
const UPSTREAM_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Store calls: sub-millisecond (embedded) to the store timeout.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// The active-sessions gauge is refreshed at most this often (one store count).
const SESSIONS_REFRESH: Duration = Duration::from_secs(10);

/// How a request ended, for `vestibule_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forwarded,
    Bypassed,
    RedirectedToLogin,
    Unauthorized401,
    Forbidden403,
    Locked429,
    Error5xx,
    Other,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Forwarded,
        Outcome::Bypassed,
        Outcome::RedirectedToLogin,
        Outcome::Unauthorized401,
        Outcome::Forbidden403,
        Outcome::Locked429,
        Outcome::Error5xx,
        Outcome::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Bypassed => "bypassed",
            Outcome::RedirectedToLogin => "redirected_to_login",
            Outcome::Unauthorized401 => "unauthorized_401",
            Outcome::Forbidden403 => "forbidden_403",
            Outcome::Locked429 => "locked_429",
            Outcome::Error5xx => "error_5xx",
            Outcome::Other => "other",
        }
    }

    /// The outcome of a response the gateway answered itself, by its status.
    pub fn from_status(status: http::StatusCode) -> Outcome {
        match status.as_u16() {
            401 => Outcome::Unauthorized401,
            403 => Outcome::Forbidden403,
            429 => Outcome::Locked429,
            500..=599 => Outcome::Error5xx,
            _ => Outcome::Other,
        }
    }
}

/// Why a forward failed, for `vestibule_upstream_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
}

/// Result of a password attempt, for `vestibule_logins_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Success,
    Failure,
    Locked,
}

/// How a second factor was presented, for `vestibule_code_checks_total{method}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMethod {
    Totp,
    BackupCode,
    RememberedDevice,
    Webauthn,
}

/// Which step a lock applies to, for `vestibule_lockouts_total{step}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStep {
    Password,
    Code,
}

/// Result of a TLS handshake, for `vestibule_tls_handshakes_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Success,
    Failure,
    Timeout,
}

/// The per-request metrics of one app, labelled with its name (SPEC §8): what it was
/// asked, how long its upstream took, how often it failed.
pub struct AppMetrics {
    requests: [Counter; 8],
    upstream_seconds: Histogram,
    upstream_errors: [Counter; 2],
}

impl AppMetrics {
    /// Registers the app's series (`app=""`: requests no app took, own pages).
    fn register(app: &str) -> Self {
        let app = app.to_string();
        AppMetrics {
            requests: Outcome::ALL.map(|o| {
                counter!("vestibule_requests_total", "app" => app.clone(), "outcome" => o.label())
            }),
            upstream_seconds: histogram!("vestibule_upstream_response_seconds", "app" => app.clone()),
            upstream_errors: ["connect", "timeout"].map(|k| {
                counter!("vestibule_upstream_errors_total", "app" => app.clone(), "kind" => k)
            }),
        }
    }

    pub fn request(&self, outcome: Outcome) {
        self.requests[outcome as usize].increment(1);
    }

    pub fn upstream_time(&self, d: Duration) {
        self.upstream_seconds.record(d.as_secs_f64());
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].increment(1);
    }
}

/// Every metric handle the gateway updates, registered up front.
pub struct Metrics {
    handle: PrometheusHandle,
    /// Kept to register the series of apps a reload adds.
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    /// Requests no app took (own pages, unrouted, refused before routing).
    no_app: AppMetrics,
    logins: [Counter; 3],
    /// `[method][0 = success, 1 = failure]`.
    code_checks: [[Counter; 2]; 4],
    lockouts: [Counter; 2],
    active_sessions: Gauge,
    sessions_refreshed_ms: AtomicU64,
    enrollments: Counter,
    backup_codes_used: Counter,
    store_seconds: Histogram,
    store_errors: Counter,
    /// Set by any failed store call, taken by the health check: a cached "store ok"
    /// must not outlive a request that has just failed on the store (SPEC §5.3).
    store_failure_seen: AtomicBool,
    handshakes: [Counter; 3],
    cert_expiry: Option<Gauge>,
    connections_open: Gauge,
    connections_parked: Counter,
}

/// Why the metrics registry could not be built.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(String);

impl Metrics {
    /// Registers every metric. `backend` labels the store metrics; `tls` adds the
    /// certificate-expiry gauge (absent on plain HTTP rather than a misleading 0).
    pub fn new(backend: &'static str, tls: bool) -> Result<Self, MetricsError> {
        let err = |e: metrics_exporter_prometheus::BuildError| MetricsError(e.to_string());
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("vestibule_upstream_response_seconds".into()),
                UPSTREAM_BUCKETS,
            )
            .map_err(err)?
            .set_buckets_for_metric(
                Matcher::Full("vestibule_store_operation_seconds".into()),
                STORE_BUCKETS,
            )
            .map_err(err)?
            .build_recorder();
        let handle = recorder.handle();
        let m = metrics::with_local_recorder(&recorder, || {
            describe();
            let code = |method: &'static str| {
                [
                    counter!("vestibule_code_checks_total", "method" => method, "result" => "success"),
                    counter!("vestibule_code_checks_total", "method" => method, "result" => "failure"),
                ]
            };
            Metrics {
                handle: handle.clone(),
                recorder: PrometheusBuilder::new().build_recorder(),
                no_app: AppMetrics::register(""),
                logins: ["success", "failure", "locked"]
                    .map(|r| counter!("vestibule_logins_total", "result" => r)),
                code_checks: [
                    code("totp"),
                    code("backup_code"),
                    code("remembered_device"),
                    code("webauthn"),
                ],
                lockouts: ["password", "code"]
                    .map(|s| counter!("vestibule_lockouts_total", "step" => s)),
                active_sessions: gauge!("vestibule_active_sessions"),
                sessions_refreshed_ms: AtomicU64::new(0),
                enrollments: counter!("vestibule_enrollments_completed_total"),
                backup_codes_used: counter!("vestibule_backup_codes_used_total"),
                store_seconds: histogram!("vestibule_store_operation_seconds", "backend" => backend),
                store_errors: counter!("vestibule_store_errors_total", "backend" => backend),
                store_failure_seen: AtomicBool::new(false),
                handshakes: ["success", "failure", "timeout"]
                    .map(|r| counter!("vestibule_tls_handshakes_total", "result" => r)),
                cert_expiry: tls.then(|| gauge!("vestibule_tls_certificate_expiry_seconds")),
                connections_open: gauge!("vestibule_connections_open"),
                connections_parked: counter!("vestibule_connections_parked_total"),
            }
        });
        // The recorder the series were registered with stays, for the apps to come.
        Ok(Metrics { recorder, ..m })
    }

    /// The per-request metrics of the app `name` (its series registered now).
    pub fn for_app(&self, name: &str) -> AppMetrics {
        metrics::with_local_recorder(&self.recorder, || AppMetrics::register(name))
    }

    /// Requests no app took.
    pub fn no_app(&self) -> &AppMetrics {
        &self.no_app
    }

    pub fn login(&self, result: LoginResult) {
        self.logins[result as usize].increment(1);
    }

    pub fn code_check(&self, method: CodeMethod, success: bool) {
        self.code_checks[method as usize][usize::from(!success)].increment(1);
    }

    pub fn lockout(&self, step: LockStep) {
        self.lockouts[step as usize].increment(1);
    }

    pub fn enrollment_completed(&self) {
        self.enrollments.increment(1);
    }

    pub fn backup_code_used(&self) {
        self.backup_codes_used.increment(1);
    }

    pub fn store_call(&self, d: Duration, ok: bool) {
        self.store_seconds.record(d.as_secs_f64());
        if !ok {
            self.store_errors.increment(1);
            self.store_failure_seen.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a store call failed since the last time this was asked (and forgets it).
    pub fn take_store_failure(&self) -> bool {
        self.store_failure_seen.swap(false, Ordering::Relaxed)
    }

    pub fn handshake(&self, result: Handshake) {
        self.handshakes[result as usize].increment(1);
    }

    /// A client connection was accepted (`+1`) or ended (`-1`).
    pub fn connection_opened(&self, opened: bool) {
        if opened {
            self.connections_open.increment(1.0);
        } else {
            self.connections_open.decrement(1.0);
        }
    }

    /// An idle HTTP/1 connection released its HTTP state to wait for its next request.
    pub fn connection_parked(&self) {
        self.connections_parked.increment(1);
    }

    /// True when the active-sessions gauge is due for a refresh (claims the refresh).
    pub fn sessions_due(&self, now_ms: u64) -> bool {
        let last = self.sessions_refreshed_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= SESSIONS_REFRESH.as_millis() as u64
            && self
                .sessions_refreshed_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn set_active_sessions(&self, n: u64) {
        self.active_sessions.set(n as f64);
    }

    pub fn set_cert_expiry(&self, seconds_left: i64) {
        if let Some(g) = &self.cert_expiry {
            g.set(seconds_left as f64);
        }
    }

    /// Histograms accumulate samples until drained; called periodically so memory
    /// stays bounded even when nobody scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = self.handle.render_to_write(&mut out) {
            tracing::error!(error = %e, "rendering metrics failed");
        }
        out
    }
}

/// HELP lines (and units) for the exposition.
fn describe() {
    describe_counter!("vestibule_requests_total", "Requests by how they ended.");
    describe_histogram!(
        "vestibule_upstream_response_seconds",
        Unit::Seconds,
        "Time until the upstream's response headers."
    );
    describe_counter!(
        "vestibule_upstream_errors_total",
        "Forwards that failed: connect (unreachable) or timeout."
    );
    describe_counter!(
        "vestibule_logins_total",
        "Password-step attempts by result."
    );
    describe_counter!(
        "vestibule_code_checks_total",
        "Second-factor checks by method and result."
    );
    describe_counter!("vestibule_lockouts_total", "Locks imposed, by step.");
    describe_gauge!(
        "vestibule_active_sessions",
        "Sessions in the store (refreshed at most every 10 s)."
    );
    describe_counter!(
        "vestibule_enrollments_completed_total",
        "TOTP enrollments completed."
    );
    describe_counter!("vestibule_backup_codes_used_total", "Backup codes used.");
    describe_histogram!(
        "vestibule_store_operation_seconds",
        Unit::Seconds,
        "Latency of store operations."
    );
    describe_counter!(
        "vestibule_store_errors_total",
        "Store operations that failed."
    );
    describe_counter!(
        "vestibule_tls_handshakes_total",
        "TLS handshakes by result."
    );
    describe_gauge!(
        "vestibule_connections_open",
        "Client connections open now (TLS handshakes included)."
    );
    describe_counter!(
        "vestibule_connections_parked_total",
        "Times an idle HTTP/1 keep-alive connection released its HTTP buffers to wait for its next request."
    );
    describe_gauge!(
        "vestibule_tls_certificate_expiry_seconds",
        "Seconds until the served certificate's notAfter (negative: expired)."
    );
}

/// Who may read `P/metrics`: loopback peers and the configured trusted proxies. The
/// TCP peer decides, never `X-Forwarded-For`, which a client can write itself.
pub fn scrape_allowed(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = client_ip::canonical(peer);
    peer.is_loopback() || client_ip::is_trusted(peer, trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_served_to_loopback_and_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        assert!(scrape_allowed("127.0.0.1".parse().unwrap(), &trusted));
        assert!(scrape_allowed("127.0.0.2".parse().unwrap(), &trusted));
        assert!(scrape_allowed("::1".parse().unwrap(), &trusted));
        assert!(scrape_allowed(
            "::ffff:127.0.0.1".parse().unwrap(),
            &trusted
        ));
        assert!(scrape_allowed("10.0.0.7".parse().unwrap(), &trusted));
        assert!(!scrape_allowed("10.1.2.3".parse().unwrap(), &trusted));
        assert!(!scrape_allowed("192.0.2.1".parse().unwrap(), &trusted));
        assert!(!scrape_allowed("2001:db8::1".parse().unwrap(), &[]));
    }

    #[test]
    fn every_label_combination_is_exported_from_the_start() {
        let m = Metrics::new("embedded", true).unwrap();
        let records = m.for_app("records");
        records.request(Outcome::Forwarded);
        m.code_check(CodeMethod::BackupCode, false);
        records.upstream_time(Duration::from_millis(30));
        m.set_cert_expiry(86_400);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("vestibule_requests_total{app=\"records\",outcome=\"forwarded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vestibule_requests_total{app=\"\",outcome=\"locked_429\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "vestibule_code_checks_total{method=\"backup_code\",result=\"failure\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "vestibule_upstream_response_seconds_bucket{app=\"records\",le=\"0.05\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("vestibule_tls_certificate_expiry_seconds 86400"),
            "{text}"
        );
        assert!(
            text.contains("vestibule_store_operation_seconds_count{backend=\"embedded\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn sessions_gauge_refresh_is_throttled() {
        let m = Metrics::new("embedded", false).unwrap();
        assert!(m.sessions_due(100_000));
        assert!(!m.sessions_due(105_000));
        assert!(m.sessions_due(110_000));
    }
}
