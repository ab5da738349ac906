//! The command line (SPEC §2). Parsing lives here; each command is a thin call into
//! the library. Exit codes: 0 success, 2 bad usage or invalid configuration, 1 other.

mod admin;
mod audit;
mod cert;
mod check;
mod demo;
mod demo_upstream;
mod directory;
mod keys;
mod rotate;
mod serve;
mod sessions;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Why a command failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or an invalid configuration: exit 2. Each line is printed as is.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Anything else: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Invalid(_) => 2,
            CliError::Failed(_) => 1,
        }
    }

    fn failed(e: impl std::fmt::Display) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Vestibule: a TLS-terminating reverse proxy that signs people in (with TOTP
/// two-factor for staff) before anything reaches the application behind it.
#[derive(Parser, Debug)]
#[command(name = "vestibule", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: config/vestibule.toml when it exists, else
    /// /etc/vestibule/vestibule.toml when that exists]
    #[arg(long, global = true, env = "VESTIBULE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Whether `--config` was given on the command line (not by the environment):
    /// set by the caller from the parsed matches; `demo` refuses it.
    #[arg(skip)]
    pub config_on_command_line: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The configuration file read when neither `--config` nor `VESTIBULE_CONFIG` names one.
pub(crate) const DEFAULT_CONFIG: &str = "config/vestibule.toml";
/// Where the Debian package puts the configuration; used when [`DEFAULT_CONFIG`] does
/// not exist, so admin commands on a packaged system need no flag.
pub(crate) const SYSTEM_CONFIG: &str = "/etc/vestibule/vestibule.toml";

impl Cli {
    /// The configuration file: `--config`, else `VESTIBULE_CONFIG`, else
    /// [`DEFAULT_CONFIG`] if it exists, else [`SYSTEM_CONFIG`] if it exists, else
    /// [`DEFAULT_CONFIG`] (whose absence is then reported).
    pub fn config_path(&self) -> PathBuf {
        if let Some(p) = &self.config {
            return p.clone();
        }
        let local = PathBuf::from(DEFAULT_CONFIG);
        let system = PathBuf::from(SYSTEM_CONFIG);
        if !local.exists() && system.is_file() {
            system
        } else {
            local
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// One-command trial: certificate, key, demo users and a demo upstream in ./demo-data/, served on https://127.0.0.1:8443 (or --listen).
    ///
    /// The demo writes its own configuration to demo-data/vestibule.toml and refuses
    /// --config; admin commands reach the demo with
    /// `vestibule --config demo-data/vestibule.toml users list` (the demo prints it).
    Demo {
        /// Address to listen on; port 0 picks a free port. The address printed is the
        /// one actually bound.
        #[arg(
            long,
            env = "VESTIBULE__SERVER__LISTEN",
            default_value = "127.0.0.1:8443"
        )]
        listen: SocketAddr,
    },
    /// Validate the configuration and every file it names: users file, encryption key, certificate and key.
    CheckConfig,
    /// Read a password from standard input and print its argon2id PHC string.
    HashPassword,
    /// Print a new random 32-byte encryption key (base64).
    GenKey,
    /// Print a new private key for the signed identity assertion (PKCS#8 PEM): save it
    /// as `headers.assertion_key_file`, readable by the gateway only.
    GenSigningKey {
        /// es256 (ECDSA P-256: every JWT library verifies it) or eddsa (Ed25519).
        #[arg(long, value_enum, default_value = "es256")]
        algorithm: SigningAlgorithm,
    },
    /// Write a self-signed certificate and key, e.g. for a first deployment (browsers warn until it is replaced by one from a CA).
    GenCert {
        /// Host name or IP address the certificate is for (repeatable; the first is also its common name).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Certificate file to write [default: the configuration's server.tls_cert].
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Key file to write, mode 0600 [default: the configuration's server.tls_key].
        #[arg(long)]
        key: Option<PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Rotate the encryption key online: add a new primary key, let running gateways
    /// load it, re-encrypt every stored secret under it. Old keys keep decrypting.
    RotateKey {
        /// Only list the keys (ids) and how many stored secrets each one seals.
        #[arg(long, conflicts_with = "drop_old")]
        status: bool,
        /// Remove every non-primary key from the key file, once no stored secret needs it.
        #[arg(long)]
        drop_old: bool,
        /// How long to wait for running gateways to load a new key before re-encrypting.
        #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Manage the users file.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Two-factor administration.
    #[command(name = "2fa", subcommand)]
    TwoFa(TwoFaCommand),
    /// Session administration.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// The tamper-evident audit file.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the chain of audit files given in order (e.g. yesterday's rotated file,
    /// then today's): prints "N events, chain intact" (exit 0) or the first line that
    /// was changed, removed, inserted or reordered (exit 1).
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// The algorithms `gen-signing-key` makes keys for.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SigningAlgorithm {
    Es256,
    Eddsa,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Add a user; the password is read from standard input.
    Add {
        name: String,
        /// A role (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List the users.
    List,
    /// Disable a user: sign-in refused, sessions and remembered browsers ended.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Set a new password (read from standard input).
    SetPassword { name: String },
    /// Replace a user's roles.
    SetRoles {
        name: String,
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Lift a lockout, including the code-step block after code_max_failures.
    Unlock { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TwoFaCommand {
    /// Whether 2FA is on, since when, last used, backup codes left, remembered browsers, security keys.
    Status { name: String },
    /// Remove the user's TOTP secret, backup codes, security keys and remembered browsers and end their sessions.
    Reset { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// End all sessions of a user.
    Revoke { name: String },
    /// List the sessions and remembered browsers of a user, or of every user.
    List { name: Option<String> },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let config = cli.config_path();
    match cli.command {
        Command::Serve => serve::run(&config),
        Command::Demo { listen } => {
            if cli.config_on_command_line {
                return Err(CliError::Invalid(vec![format!(
                    "--config: demo does not read a configuration file; it writes its own to {}. To serve your configuration run `vestibule --config FILE serve`",
                    demo::CONFIG_FILE
                )]));
            }
            demo::run(listen)
        }
        Command::CheckConfig => check::run(&config),
        Command::HashPassword => keys::hash_password(),
        Command::GenKey => keys::gen_key(),
        Command::GenSigningKey { algorithm } => keys::gen_signing_key(algorithm),
        Command::GenCert {
            names,
            cert,
            key,
            days,
            force,
        } => cert::run(
            &config,
            cert::CertRequest {
                names,
                cert,
                key,
                valid_for: std::time::Duration::from_secs(u64::from(days) * 86_400),
                force,
            },
        ),
        Command::RotateKey {
            status,
            drop_old,
            wait,
        } => rotate::run(&config, status, drop_old, wait),
        Command::Users(UsersCommand::Unlock { name }) => admin::unlock(&config, &name),
        Command::Users(cmd) => users::run(&config, cmd),
        Command::TwoFa(TwoFaCommand::Status { name }) => admin::twofa_status(&config, &name),
        Command::TwoFa(TwoFaCommand::Reset { name }) => admin::twofa_reset(&config, &name),
        Command::Sessions(SessionsCommand::Revoke { name }) => {
            admin::sessions_revoke(&config, &name)
        }
        Command::Sessions(SessionsCommand::List { name }) => {
            sessions::list(&config, name.as_deref())
        }
        Command::Audit(AuditCommand::Verify { files }) => audit::verify(&config, &files),
    }
}

/// Loads and validates the configuration, mapping problems to exit 2.
fn load_config(path: &std::path::Path) -> Result<crate::config::Config, CliError> {
    crate::config::load(path)
        .map_err(|ps| CliError::Invalid(ps.iter().map(|p| p.to_string()).collect()))
}

/// A current-thread runtime for the admin commands.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::failed)
}

/// Reads a password from standard input, without echo on a terminal.
fn read_password(prompt: &str) -> Result<zeroize::Zeroizing<String>, CliError> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}");
        return rpassword::read_password()
            .map(zeroize::Zeroizing::new)
            .map_err(CliError::failed);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::failed)?;
    let trimmed = line.trim_end_matches(['\n', '\r']).to_string();
    Ok(zeroize::Zeroizing::new(trimmed))
}
