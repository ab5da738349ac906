//! The operational log (tracing), as text or JSON lines on standard output.
//!
//! Lines are handed to a dedicated writer thread, so a slow reader of standard output
//! (a full pipe, a stalled log shipper) never blocks the async workers that proxy
//! traffic. Under a sustained flood the queue applies back-pressure rather than
//! dropping lines.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Keeps the writer thread alive; dropping it flushes what is queued.
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Installs the global subscriber; `RUST_LOG` refines the default `info` level.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .thread_name("vestibule-log")
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    LogGuard(installed.is_ok().then_some(guard))
}
