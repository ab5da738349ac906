//! One access line per request (`[log] access_log`), in the operational log's format
//! (`[log] format`): the same `key=value` text line or JSON object that `tracing`'s
//! formatter writes, with the same timestamp, level and field order, so log shippers
//! see one log.
//!
//! Only the method, the normalised path (never the query: it may carry tokens or
//! personal data), the status, the timings, the request id and the user are written.
//! No header is ever logged, so Cookie, Set-Cookie and Authorization values cannot leak.
//!
//! The line is formatted here rather than through `tracing`'s field visitors, and a
//! serving worker collects its lines and hands them to the log writer thread in one
//! batch per [`BATCH_EVERY`]: the per-request cost is a few hundred instructions, not
//! a formatter pass plus a wake-up of the writer thread per line. `RUST_LOG` still
//! filters the lines by their target (`access`), as before.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};

use crate::config::LogFormat;

/// The target of access lines, so `RUST_LOG` can filter them separately
/// (e.g. `RUST_LOG=info,access=off`).
pub const TARGET: &str = "access";

/// How long a serving worker may hold its access lines before handing them on.
pub const BATCH_EVERY: Duration = Duration::from_millis(50);

/// A batch is handed on early once it holds this many bytes.
const BATCH_BYTES: usize = 32 * 1024;

/// What one access line says.
pub struct Access<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: StatusCode,
    pub upstream: Option<Duration>,
    pub total: Duration,
    pub request_id: &'a str,
    pub user: Option<&'a str>,
    /// The app the request went to (SPEC §8), when one took it.
    pub app: Option<&'a str>,
}

/// Hands a batch of complete lines to the log's writer (its background thread).
type Writer = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Where lines go once formatted.
struct Sink {
    format: LogFormat,
    writer: Writer,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends access lines to `writer` in `format`. Called once, by the logging set-up;
/// without it, lines go to standard output as text.
pub fn install(format: LogFormat, writer: impl Fn(&[u8]) + Send + Sync + 'static) {
    let _ = SINK.set(Sink {
        format,
        writer: Box::new(writer),
    });
}

fn emit(bytes: &[u8]) {
    match SINK.get() {
        Some(sink) => (sink.writer)(bytes),
        None => {
            let _ = std::io::stdout().lock().write_all(bytes);
        }
    }
}

/// This thread's lines not yet handed on; handed on when the thread ends, too.
struct Pending(Vec<u8>);

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            emit(&self.0);
        }
    }
}

thread_local! {
    static PENDING: RefCell<Pending> = const { RefCell::new(Pending(Vec::new())) };
    static BATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Writes the line (fields missing when unknown: `user`, `upstream_ms`). On a thread
/// that batches (see [`batch_on_this_thread`]) it is handed on within [`BATCH_EVERY`];
/// anywhere else at once.
pub fn write(a: &Access<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let format = SINK.get().map_or(LogFormat::Text, |s| s.format);
    let now = SystemTime::now();
    PENDING.with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        format_line(&mut p.0, a, format, now);
        if !BATCHING.get() || p.0.len() >= BATCH_BYTES {
            emit(&p.0);
            p.0.clear();
        }
    });
}

/// Hands this thread's collected lines on now.
pub fn flush() {
    PENDING.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut()
            && !p.0.is_empty()
        {
            emit(&p.0);
            p.0.clear();
        }
    });
}

/// Lets this thread collect its lines; the caller must run [`flush_periodically`] on
/// it (a serving worker does, on its runtime).
pub fn batch_on_this_thread() {
    BATCHING.set(true);
}

/// Hands the thread's lines on every [`BATCH_EVERY`], forever.
pub async fn flush_periodically() {
    let mut tick = tokio::time::interval(BATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush();
    }
}

/// Appends one line for `a`, stamped `now`, exactly as `tracing`'s formatter would
/// write the event (`tests::matches_the_tracing_formatter` keeps it so).
pub fn format_line(out: &mut Vec<u8>, a: &Access<'_>, format: LogFormat, now: SystemTime) {
    match format {
        LogFormat::Text => {
            timestamp(out, now);
            out.extend_from_slice(b"  INFO access method=");
            debug_str(out, a.method.as_str());
            out.extend_from_slice(b" path=");
            debug_str(out, a.path);
            out.extend_from_slice(b" status=");
            out.extend_from_slice(itoa::Buffer::new().format(a.status.as_u16()).as_bytes());
            if let Some(u) = a.upstream {
                out.extend_from_slice(b" upstream_ms=");
                millis(out, u);
            }
            out.extend_from_slice(b" total_ms=");
            millis(out, a.total);
            out.extend_from_slice(b" request_id=");
            debug_str(out, a.request_id);
            if let Some(app) = a.app {
                out.extend_from_slice(b" app=");
                debug_str(out, app);
            }
            if let Some(user) = a.user {
                out.extend_from_slice(b" user=");
                debug_str(out, user);
            }
        }
        LogFormat::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(out, now);
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"access\",\"method\":");
            json_str(out, a.method.as_str());
            out.extend_from_slice(b",\"path\":");
            json_str(out, a.path);
            out.extend_from_slice(b",\"status\":");
            out.extend_from_slice(itoa::Buffer::new().format(a.status.as_u16()).as_bytes());
            if let Some(u) = a.upstream {
                out.extend_from_slice(b",\"upstream_ms\":");
                millis(out, u);
            }
            out.extend_from_slice(b",\"total_ms\":");
            millis(out, a.total);
            out.extend_from_slice(b",\"request_id\":");
            json_str(out, a.request_id);
            if let Some(app) = a.app {
                out.extend_from_slice(b",\"app\":");
                json_str(out, app);
            }
            if let Some(user) = a.user {
                out.extend_from_slice(b",\"user\":");
                json_str(out, user);
            }
            out.push(b'}');
        }
    }
    out.push(b'\n');
}

thread_local! {
    /// The date and time to the second of the last line, already formatted: lines come
    /// many to a second, so the calendar arithmetic runs once a second, not per line.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `now` as RFC 3339 UTC with microseconds (`2026-12-06T01:07:18.382585Z`), as
/// `tracing`'s default timer writes it.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let full = humantime::format_rfc3339_seconds(now).to_string();
        if let Some(prefix) = full.as_bytes().get(..19) {
            text.copy_from_slice(prefix);
        }
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    let micros = since.subsec_micros();
    let mut frac = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    let mut rest = micros;
    for digit in frac[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&frac);
}

/// Milliseconds with microsecond resolution, written as the `f64` the line has always
/// carried (`1.0`, `0.25`, `12.345`).
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(micros / 1000).as_bytes());
    let mut frac = (micros % 1000) as u32;
    if frac == 0 {
        out.extend_from_slice(b".0");
        return;
    }
    let mut digits = [b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, 0];
    frac %= 10;
    digits[2] = b'0' + frac as u8;
    let keep = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
    out.push(b'.');
    out.extend_from_slice(&digits[..keep]);
}

/// A string as `{:?}` writes it; plain ASCII without quotes or backslashes is copied.
fn debug_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The event as the gateway wrote it through `tracing` before lines were formatted
    /// here: the reference for the format.
    fn via_tracing(a: &Access<'_>) {
        fn ms(d: Duration) -> f64 {
            (d.as_micros() as f64) / 1000.0
        }
        tracing::info!(
            target: TARGET,
            method = a.method.as_str(),
            path = a.path,
            status = a.status.as_u16(),
            upstream_ms = a.upstream.map(ms),
            total_ms = ms(a.total),
            request_id = a.request_id,
            app = a.app,
            user = a.user,
            "access"
        );
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn reference(a: &Access<'_>, format: LogFormat) -> String {
        let out = Captured::default();
        let w = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_target(false)
            .with_ansi(false)
            .without_time();
        match format {
            LogFormat::Text => {
                tracing::subscriber::with_default(builder.finish(), || via_tracing(a))
            }
            LogFormat::Json => tracing::subscriber::with_default(
                builder.json().flatten_event(true).finish(),
                || via_tracing(a),
            ),
        }
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    fn ours(a: &Access<'_>, format: LogFormat) -> String {
        let mut out = Vec::new();
        format_line(&mut out, a, format, SystemTime::UNIX_EPOCH);
        let line = String::from_utf8(out).unwrap();
        // The reference has no timestamp; everything else must be identical.
        match format {
            LogFormat::Text => line.replacen("1970-01-01T00:00:00.000000Z ", "", 1),
            LogFormat::Json => {
                line.replacen("\"timestamp\":\"1970-01-01T00:00:00.000000Z\",", "", 1)
            }
        }
    }

    #[test]
    fn matches_the_tracing_formatter() {
        let get = Method::GET;
        let odd = Method::from_bytes(b"PURGE").unwrap();
        let cases = [
            (
                &get,
                "/bench/x",
                200,
                Some(705),
                706,
                "fd8fe9ea382da675",
                None,
            ),
            (
                &get,
                "/app/x",
                200,
                Some(1000),
                1234,
                "a1",
                Some("bench.patient"),
            ),
            (
                &odd,
                "/a\"b\\c/é",
                404,
                None,
                0,
                "r-1.2:3",
                Some("dr.grey@clinic"),
            ),
            (&get, "/", 502, Some(30_000_001), 30_000_010, "x", None),
            (&get, "/t\u{7f}\u{1}", 401, None, 10, "y", None),
            (&get, "/x", 303, Some(1), 999_999_999, "z", Some("u")),
        ];
        for (i, (method, path, status, up, total, rid, user)) in cases.into_iter().enumerate() {
            let a = Access {
                app: (i % 2 == 0).then_some("records"),
                method,
                path,
                status: StatusCode::from_u16(status).unwrap(),
                upstream: up.map(Duration::from_micros),
                total: Duration::from_micros(total),
                request_id: rid,
                user,
            };
            for format in [LogFormat::Text, LogFormat::Json] {
                assert_eq!(ours(&a, format), reference(&a, format), "{format:?} {path}");
            }
        }
    }

    #[test]
    fn the_cached_second_gives_the_same_timestamps_as_formatting_each() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_982_038);
        for micros in [
            0,
            1,
            999_999,
            1_000_000,
            1_000_001,
            59_999_999,
            86_400_000_123,
        ] {
            let at = base + Duration::from_micros(micros);
            let mut out = Vec::new();
            timestamp(&mut out, at);
            let want = humantime::format_rfc3339_micros(at).to_string();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn lines_carry_an_rfc3339_timestamp_in_microseconds() {
        let a = Access {
            method: &Method::GET,
            path: "/",
            status: StatusCode::OK,
            upstream: None,
            total: Duration::ZERO,
            request_id: "r",
            user: None,
            app: None,
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_982_038_382_585);
        let mut out = Vec::new();
        format_line(&mut out, &a, LogFormat::Text, at);
        assert!(out.starts_with(b"2025-12-06T00:47:18.382585Z  INFO access "));
        out.clear();
        format_line(&mut out, &a, LogFormat::Json, at);
        assert!(out.starts_with(b"{\"timestamp\":\"2025-12-06T00:47:18.382585Z\",\"level\""));
    }
}
