//! The `vestibule` command: parse arguments, run, map errors to exit codes.

#![forbid(unsafe_code)]

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

/// mimalloc: the proxy allocates many small, short-lived buffers per request, where it
/// measurably beats the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // One TLS crypto provider for every rustls user in the process (server, upstream
    // client, Redis client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = vestibule::Cli::command()
        .try_get_matches()
        .and_then(|m| vestibule::Cli::from_arg_matches(&m).map(|c| (c, m)));
    let cli = match parsed {
        Ok((mut cli, matches)) => {
            cli.config_on_command_line = config_given_on_command_line(&matches);
            cli
        }
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

/// Whether `--config` was typed (at any level: it is a global option), as opposed to
/// coming from `VESTIBULE_CONFIG` or absent.
fn config_given_on_command_line(matches: &ArgMatches) -> bool {
    let mut m = Some(matches);
    while let Some(level) = m {
        if level.value_source("config") == Some(ValueSource::CommandLine) {
            return true;
        }
        m = level.subcommand().map(|(_, sub)| sub);
    }
    false
}
