//! The typed, validated configuration. Every value here has passed validation, so the
//! rest of the program never re-checks a setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::uri::{Authority, Scheme};
use ipnet::IpNet;

use crate::core::policy::{PathCase, Rule};
use crate::core::totp::TotpSettings;

/// Everything `vestibule serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub headers: HeadersConfig,
    pub users: UsersConfig,
    pub policy: PolicyConfig,
    pub session: SessionConfig,
    pub storage: StorageConfig,
    pub totp: TotpSettings,
    pub backup_codes: BackupCodesConfig,
    pub remember_device: RememberDeviceConfig,
    pub lockout: LockoutConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub ui: UiConfig,
    pub webauthn: WebauthnConfig,
}

/// Certificate and key paths; present only when TLS is on.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub http_redirect_listen: Option<SocketAddr>,
    /// Reserved path prefix of the gateway's own pages, without a trailing slash.
    pub prefix: String,
    /// Allowed `Host` values, lower-case, without port. Empty: any.
    pub hostnames: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_request_header_bytes: usize,
    /// Connections beyond this are refused at accept time.
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub scheme: Scheme,
    pub authority: Authority,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub preserve_host: bool,
    /// An open WebSocket with no traffic either way for this long is closed.
    pub websocket_idle_timeout: Duration,
}

/// Names of the identity headers the gateway sets, and extra names it strips.
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub user: HeaderName,
    pub email: HeaderName,
    pub name: HeaderName,
    pub roles: HeaderName,
    pub mfa: HeaderName,
    pub strip: Vec<HeaderName>,
    /// The signed identity assertion's header (`headers.assertion`; None: off).
    pub assertion: Option<HeaderName>,
    /// The PEM file of its signing keys (`headers.assertion_key_file`).
    pub assertion_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub file: PathBuf,
    pub min_password_length: usize,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub require_2fa_roles: Vec<String>,
    pub rules: Vec<Rule>,
    /// `policy.case_insensitive_paths`: how rule paths are compared with request paths.
    pub path_case: PathCase,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
}

/// Which storage backend holds sessions and 2FA state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
}

/// How the Redis backend reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    Standalone,
    Sentinel,
    Cluster,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub backend: Backend,
    pub path: PathBuf,
    pub redis_url: String,
    pub redis_mode: RedisMode,
    /// Cluster seed nodes, or Sentinel addresses (`redis://host:port` each).
    pub redis_nodes: Vec<String>,
    /// The master name Sentinel watches.
    pub redis_sentinel_master: String,
    /// Extra CA (PEM) for `rediss://` servers with a private certificate.
    pub redis_ca_file: Option<PathBuf>,
    pub key_prefix: String,
    pub encryption_key_file: Option<PathBuf>,
    /// Upper bound for every single store call.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct BackupCodesConfig {
    pub count: usize,
}

#[derive(Debug, Clone)]
pub struct RememberDeviceConfig {
    pub enabled: bool,
    pub duration: Duration,
}

/// Lockout limits (SPEC §6) plus the per-address velocity limit on the password step.
#[derive(Debug, Clone)]
pub struct LockoutConfig {
    pub max_failures: u32,
    pub duration: Duration,
    pub max_duration: Duration,
    pub code_max_failures: u32,
    /// Failed password attempts per client address and minute before answers slow down.
    pub ip_failures_per_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub audit_file: Option<PathBuf>,
    /// One access line per request when on.
    pub access_log: bool,
}

/// Bounds on what one client may send to the gateway's own pages.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest form body accepted on the own pages (413 beyond).
    pub max_form_bytes: usize,
    /// Form submissions (POSTs to the own pages) per client address and minute; 429 beyond.
    pub own_pages_per_minute: u32,
}

/// The operator's branding of the gateway's pages (`[ui]`).
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Shown in the header and the page titles.
    pub clinic_name: String,
    /// A PNG or SVG logo, read and checked at load.
    pub logo: Option<LogoFile>,
    /// `#rrggbb`, lower-case; readable as text on white and under white text.
    pub primary_color: String,
    /// Who to contact with sign-in problems; shown in the footer and on error pages.
    pub support_contact: Option<String>,
    /// The pages' language when the browser asks for none we have.
    pub default_language: String,
}

/// A logo file's content, read once when the configuration is loaded.
#[derive(Clone)]
pub struct LogoFile {
    pub path: PathBuf,
    pub bytes: std::sync::Arc<[u8]>,
    pub content_type: &'static str,
}

impl std::fmt::Debug for LogoFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoFile")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// What a security key must show about its user at sign-in (`webauthn.user_verification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserVerification {
    /// A PIN or biometric every time (passkey ceremonies).
    Required,
    /// Asked for when the key can (security-key ceremonies).
    Preferred,
    /// A touch is enough.
    Discouraged,
}

/// `[webauthn]` (SPEC §10): security keys and passkeys.
#[derive(Debug, Clone)]
pub struct WebauthnConfig {
    pub enabled: bool,
    /// The relying party id (a domain name) keys are bound to; resolved from the
    /// cookie domain or the first `server.hostnames` entry when not set. Empty when
    /// WebAuthn is off.
    pub rp_id: String,
    pub rp_name: String,
    pub user_verification: UserVerification,
    pub passwordless: bool,
}
