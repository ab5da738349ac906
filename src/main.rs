//! The `vestibule` command: parse arguments, run, map errors to exit codes.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
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
