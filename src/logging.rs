//! The operational log (tracing), as text or JSON lines on standard output.
//!
//! Routine lines (info and below: access lines above all) are handed to a dedicated
//! writer thread, so a slow reader of standard output (a full pipe, a stalled log
//! shipper) never blocks the workers that proxy traffic; under a sustained flood the
//! queue applies back-pressure rather than dropping lines. Warnings and errors are
//! rare and are written at once, so they are on the terminal before anything else.
//! Access lines take the same writer thread, in batches (see [`crate::access_log`]).

use tracing::Level;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::config::LogFormat;

/// Keeps the writer thread alive; dropping it flushes what is queued.
pub struct LogGuard {
    _flush_on_drop: Option<WorkerGuard>,
}

/// Installs the global subscriber; `RUST_LOG` refines the default `info` level.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .thread_name("vestibule-log")
        .finish(std::io::stdout());
    let access = writer.clone();
    crate::access_log::install(format, move |lines| {
        let _ = std::io::Write::write_all(&mut access.clone(), lines);
    });
    // Colour codes only for a person at a terminal, never into files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout.with_max_level(Level::WARN).or_else(writer))
        .with_target(false)
        .with_ansi(ansi);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    LogGuard {
        _flush_on_drop: installed.is_ok().then_some(guard),
    }
}
