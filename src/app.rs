//! Wiring: builds the shared state from the configuration. No request logic here.

use std::sync::Arc;

use crate::audit::Audit;
use crate::config::Config;
use crate::core::lockout::LockPolicy;
use crate::core::store::Store;
use crate::core::user::RolePolicy;
use crate::http::cookies;
use crate::http::csrf::Csrf;
use crate::keys::KeyringHandle;
use crate::pages::render::Brand;
use crate::pages::velocity::Velocity;
use crate::session::Sessions;
use crate::users::UsersHandle;
use crate::users::ldap::LdapDirectory;
use crate::users::source::{FileSource, UserSource};

/// Base name of the remember-device cookie (fixed by SPEC §6).
pub const DEVICE_COOKIE_BASE: &str = "vestibule_device";

/// Everything a request may need, built once.
pub struct App {
    pub cfg: Config,
    pub tls: bool,
    pub brand: Brand,
    pub store: Arc<dyn Store>,
    /// Encryption keys, reloaded when the key file changes (`rotate-key`).
    pub keys: Arc<KeyringHandle>,
    /// Where users come from (the users file or a directory), as sign-in and sessions
    /// see it.
    pub users: Arc<dyn UserSource>,
    /// The same source, for its upkeep: the file watcher or the directory refresh.
    pub user_upkeep: UserUpkeep,
    pub roles: RolePolicy,
    pub sessions: Sessions,
    pub csrf: Csrf,
    /// The apps behind the gateway and the rules, reloaded with the configuration.
    pub(crate) apps: Arc<crate::apps::AppsHandle>,
    /// Reloads the apps and rules from the configuration file (set by `serve`).
    pub(crate) reloader: Option<Arc<crate::apps::Reloader>>,
    /// The gateway's own cookie names, which no upstream receives.
    pub(crate) own_cookies: Vec<String>,
    pub audit: Arc<Audit>,
    /// The sign-in flow: next step, attempts, factors (no HTTP inside).
    pub(crate) signin: crate::signin::SignIn,
    pub velocity: Velocity,
    /// Form submissions per client address (`limits.own_pages_per_minute`).
    pub page_posts: crate::http::rate::PerAddress,
    pub(crate) device_cookie: cookies::OwnCookie,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The served certificate's expiry; `serve` shares the TLS reloader's here.
    pub cert_expiry: Arc<crate::accept::cert_expiry::CertExpiry>,
    pub health: crate::pages::health::HealthCache,
    /// The signed identity assertion, when `headers.assertion` is set.
    pub assertions: Option<crate::assertion::Assertions>,
}

/// The background work a user source needs (`serve` runs it).
pub enum UserUpkeep {
    /// Reload the users file when it changes.
    File(Arc<UsersHandle>),
    /// Re-read signed-in users every `ldap.refresh`.
    Ldap(Arc<LdapDirectory>),
}

/// Why the gateway cannot be built from an otherwise valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Key(#[from] crate::keys::CryptoError),
    #[error("{0}")]
    AssertionKey(#[from] crate::assertion::KeyError),
    #[error("storage: {0}")]
    Store(#[from] crate::core::store::StoreError),
    #[error("{0}")]
    Upstream(#[from] crate::proxy::client::ClientError),
    #[error("users file: {0}")]
    Users(String),
    #[error("{0}")]
    Directory(#[from] crate::users::ldap::SetupError),
    #[error("log.audit_file: {0}")]
    Audit(std::io::Error),
    #[error("cannot start the password-hashing threads: {0}")]
    Threads(std::io::Error),
    #[error("{0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("{0}")]
    Webauthn(String),
}

/// Hashing threads: one per core. They run at the lowest priority, so they take only
/// the CPU that proxied traffic leaves.
fn hashing_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl App {
    pub async fn build(cfg: Config) -> Result<Self, BuildError> {
        let keys = Arc::new(KeyringHandle::load(
            cfg.storage.encryption_key_file.as_deref(),
        )?);
        let backend = match cfg.storage.backend {
            crate::config::Backend::Embedded => "embedded",
            crate::config::Backend::Redis => "redis",
        };
        let metrics = Arc::new(crate::metrics::Metrics::new(
            backend,
            cfg.server.tls.is_some(),
        )?);
        let store = crate::metrics::store::MeteredStore::wrap(
            crate::store::open(&cfg.storage).await?,
            metrics.clone(),
        );
        let tls = cfg.server.tls.is_some();
        let sessions = Sessions::new(
            store.clone(),
            &cfg.session.cookie_name,
            tls,
            cfg.session.idle_timeout,
            cfg.session.absolute_timeout,
        )
        .with_cookie_domain(
            cfg.session.cookie_domain.as_deref(),
            &cfg.session.cookie_name,
            tls,
        )
        .with_role_timeouts(&cfg.session.role_timeouts);
        let csrf = Csrf::new(keys.get().derive("vestibule csrf v1"), tls);
        let device_cookie = cookies::OwnCookie::new(
            DEVICE_COOKIE_BASE,
            tls,
            cfg.session.cookie_domain.as_deref(),
        );
        let own_cookies = vec![
            sessions.cookie_name().to_string(),
            csrf.cookie_name().to_string(),
            device_cookie.name().to_string(),
        ];
        let apps = Arc::new(crate::apps::AppsHandle::new(crate::apps::build(
            &cfg,
            &own_cookies,
            &metrics,
        )?));
        let assertions = match &cfg.headers.assertion_key_file {
            Some(file) if cfg.headers.assertion.is_some() => {
                Some(crate::assertion::Assertions::load(file)?)
            }
            _ => None,
        };
        let audit = Audit::open(
            cfg.log.audit_file.as_deref(),
            keys.clone(),
            crate::audit::instance_id(&cfg.server.listen.port().to_string()),
        )
        .map_err(BuildError::Audit)?;
        let audit = Arc::new(audit);
        let lock_policy = LockPolicy {
            max_failures: cfg.lockout.max_failures,
            duration_ms: cfg.lockout.duration.as_millis() as u64,
            max_duration_ms: cfg.lockout.max_duration.as_millis() as u64,
            code_max_failures: cfg.lockout.code_max_failures,
        };
        let roles = RolePolicy {
            require_2fa_roles: cfg.policy.require_2fa_roles.clone(),
        };
        // Bounds concurrent argon2 work so a login storm cannot take every core.
        let hashing = Arc::new(
            crate::hash_pool::HashPool::new(hashing_threads()).map_err(BuildError::Threads)?,
        );
        let (users, password_file, user_upkeep): (
            Arc<dyn UserSource>,
            Option<Arc<FileSource>>,
            UserUpkeep,
        ) = match &cfg.ldap {
            Some(l) => {
                let dir = Arc::new(LdapDirectory::new(l, cfg.session.idle_timeout)?);
                (dir.clone(), None, UserUpkeep::Ldap(dir))
            }
            None => {
                let handle = Arc::new(UsersHandle::load(&cfg.users.file).map_err(|ps| {
                    BuildError::Users(
                        ps.iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                })?);
                let file = Arc::new(FileSource {
                    handle: handle.clone(),
                    hashing: hashing.clone(),
                });
                (file.clone(), Some(file), UserUpkeep::File(handle))
            }
        };
        let signin = crate::signin::SignIn::new(
            crate::signin::Parts {
                store: store.clone(),
                users: users.clone(),
                password_file,
                keys: keys.clone(),
                roles: roles.clone(),
                audit: audit.clone(),
                metrics: metrics.clone(),
                clock: Arc::new(crate::core::clock::SystemClock),
            },
            crate::signin::Settings {
                totp: cfg.totp.clone(),
                backup_codes: cfg.backup_codes.count,
                remember_for: cfg
                    .remember_device
                    .enabled
                    .then_some(cfg.remember_device.duration),
                lock_policy,
                keys: crate::signin::security_keys::KeyEngine::new(&cfg.webauthn)
                    .map_err(BuildError::Webauthn)?,
            },
        );
        Ok(Self {
            brand: Brand::from_config(&cfg),
            roles,
            signin,
            velocity: Velocity::new(cfg.lockout.ip_failures_per_minute),
            page_posts: crate::http::rate::PerAddress::default(),
            keys,
            users,
            user_upkeep,
            store,
            tls,
            sessions,
            csrf,
            apps,
            reloader: None,
            own_cookies,
            audit,

            device_cookie,
            metrics,
            cert_expiry: Arc::default(),
            health: Default::default(),
            assertions,
            cfg,
        })
    }
}
