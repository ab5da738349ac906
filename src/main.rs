//! The `vestibule` command: parse arguments, run, map errors to exit codes.

#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc: the proxy allocates many small, short-lived buffers per request, where it
/// measurably beats the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // One TLS crypto provider for every rustls user in the process (server, upstream
    // client, Redis client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match vestibule::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(e) = vestibule::cli::run(cli) {
        eprintln!("{e}");
        std::process::exit(e.exit_code());
    }
}
