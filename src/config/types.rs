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
    /// `[ldap]`: present exactly when `users.source = "ldap"` (SPEC §11).
    pub ldap: Option<LdapConfig>,
    /// The applications behind the gateway (SPEC §8), never empty: without `[[apps]]`,
    /// the one app `default` made of `[upstream]` that takes every request.
    pub apps: Vec<AppConfig>,
}

/// The name of the app `[upstream]` makes (SPEC §8).
pub const DEFAULT_APP: &str = "default";

/// One application behind the gateway (`[[apps]]`, or `[upstream]` as `default`).
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `[a-z0-9-]{1,32}`; in logs, metrics, audit events and the assertion's `aud`.
    pub name: String,
    /// Where it was configured ("apps[2]", or "upstream" for the fallback), for messages.
    pub section: String,
    /// Lower-case host names without port; empty: any host.
    pub hosts: Vec<String>,
    /// Normal form: "/" or a path without trailing slash ("/lab").
    pub path_prefix: String,
    pub upstream: UpstreamConfig,
    /// Who may use the app at all; empty: every signed-in user.
    pub roles: Vec<String>,
    /// The prefix is removed on the way up and put back in the answer's paths.
    pub strip_prefix: bool,
    /// The identity header names this app is sent (`[headers]` where it sets none).
    pub headers: HeadersConfig,
    /// Evaluated before `[[policy.rules]]`, on the same (client-side) paths.
    pub rules: Vec<Rule>,
    /// Where a sign-in without `rd` lands on this app's hosts.
    pub landing: Option<String>,
    /// Normal paths whose request, once forwarded, ends the gateway session too.
    pub logout_paths: Vec<String>,
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
    /// `server.portal_url` (SPEC §9): where the pages are reached when forward-auth
    /// protects other hosts; scheme and authority, no trailing slash.
    pub portal_url: Option<String>,
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
    /// Where users come from (`users.source`).
    pub source: UserSourceKind,
}

/// `users.source`: the users file (SPEC §4) or a directory (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSourceKind {
    File,
    Ldap,
}

/// `[ldap]`, validated (SPEC §11). The bind password itself is not here: it is read
/// from `bind_password_file` or `VESTIBULE_LDAP_BIND_PASSWORD` when the directory is
/// opened, so the configuration never holds a secret.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldaps://` or `ldap://` URLs, tried in order (fail-over).
    pub urls: Vec<String>,
    pub start_tls: bool,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// The search filter with `{username}` where the escaped username goes.
    pub user_filter: String,
    /// The attribute `{username}` is compared with in `user_filter` (e.g.
    /// `sAMAccountName`): the user's canonical name is read from it.
    pub username_attribute: String,
    pub display_name_attribute: String,
    pub email_attribute: String,
    /// Group DN → role, in the order written.
    pub group_roles: Vec<(String, String)>,
    pub nested_groups: bool,
    pub refresh: Duration,
    pub timeout: Duration,
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
    /// `session.cookie_domain`: session and device cookies cover this domain and its
    /// subdomains (one sign-in for every app host under it); None: host-only cookies.
    pub cookie_domain: Option<String>,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// `[[session.role_timeouts]]`: shorter (or longer) automatic log-off per role.
    pub role_timeouts: Vec<RoleTimeout>,
}

/// One `[[session.role_timeouts]]` entry; a missing value is the `[session]` one.
#[derive(Debug, Clone)]
pub struct RoleTimeout {
    pub role: String,
    pub idle_timeout: Option<Duration>,
    pub absolute_timeout: Option<Duration>,
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

/// The environment variable that may carry the LDAP service account's password
/// instead of `ldap.bind_password_file`.
pub const LDAP_BIND_PASSWORD_ENV: &str = "VESTIBULE_LDAP_BIND_PASSWORD";

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
