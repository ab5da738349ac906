//! `serve`: validate everything first, then bind, then run until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::CliError;
use crate::accept::{self, tls::Tls};
use crate::app::{App, BuildError};
use crate::config::Config;
use crate::core::clock::now_ms;

/// Called once with the address actually bound, before any connection is accepted.
pub(super) type OnBound = Box<dyn FnOnce(SocketAddr) + Send>;

pub fn run(path: &Path) -> Result<(), CliError> {
    // The same checks as `check-config`: every problem of every file in one go.
    let cfg = super::check::full(path)?.cfg;
    let _log = crate::logging::init(cfg.log.format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::failed)?;
    rt.block_on(serve_reloading(cfg, Some(path), None, None))
}

fn build_error(e: BuildError, key_source: &str) -> CliError {
    match e {
        BuildError::Key(k) => {
            CliError::Invalid(vec![super::check::key_problem(key_source, &k).to_string()])
        }
        BuildError::AssertionKey(k) => {
            CliError::Invalid(vec![format!("headers.assertion_key_file: {k}")])
        }
        BuildError::Users(u) => CliError::Invalid(vec![format!("users.file: {u}")]),
        BuildError::Upstream(u) => CliError::Invalid(vec![u.to_string()]),
        // The service password or CA file of `[ldap]` is unusable: a configuration
        // problem (exit 2), already worded `ldap.KEY …`.
        BuildError::Directory(d) => CliError::Invalid(vec![d.to_string()]),
        other => CliError::Failed(other.to_string()),
    }
}

/// Runs the gateway with `cfg` until a shutdown signal (or `stop` resolves);
/// `on_bound` learns the listening address once the bind succeeded.
pub async fn serve(
    cfg: Config,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
    on_bound: Option<OnBound>,
) -> Result<(), CliError> {
    serve_reloading(cfg, None, stop, on_bound).await
}

/// As [`serve`]; with `config_path`, the file's apps and rules are reloaded on
/// SIGHUP and when it changes (`apps::Reloader`).
async fn serve_reloading(
    cfg: Config,
    config_path: Option<&Path>,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
    on_bound: Option<OnBound>,
) -> Result<(), CliError> {
    let tls = match &cfg.server.tls {
        Some(files) => Some(Arc::new(
            Tls::new(&files.cert, &files.key)
                .map_err(|e| CliError::Invalid(vec![e.to_string()]))?,
        )),
        None => None,
    };
    let warnings = crate::config::warnings(&cfg);
    let key_source = super::check::key_source(&cfg);
    let mut app = App::build(cfg)
        .await
        .map_err(|e| build_error(e, key_source))?;
    if let Some(t) = &tls {
        app.cert_expiry = t.expiry();
    }
    if let Some(path) = config_path {
        app.reloader = Some(Arc::new(crate::apps::Reloader::new(
            path.to_path_buf(),
            &app.cfg,
            app.apps.clone(),
            app.own_cookies.clone(),
            app.metrics.clone(),
        )));
    }
    let app = Arc::new(app);
    let server = &app.cfg.server;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let listener = TcpListener::bind(server.listen)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", server.listen)))?;
    let bound = listener.local_addr().map_err(CliError::failed)?;
    if let Some(addr) = server.http_redirect_listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Failed(format!("cannot listen on {addr}: {e}")))?;
        tokio::spawn(accept::redirect::run(l, Arc::new(server.clone())));
    }
    if let Some(t) = &tls {
        tokio::spawn(t.clone().watch());
    }
    spawn_maintenance(app.clone());
    if let Some(r) = &app.reloader {
        tokio::spawn(r.clone().watch());
    }
    spawn_observability(app.clone(), tls.is_some());
    if let Some(tell) = on_bound {
        tell(bound);
    }
    tracing::info!(
        listen = %bound,
        tls = tls.is_some(),
        apps = %app
            .apps
            .get()
            .all()
            .iter()
            .map(|a| format!("{} -> {}", a.name, a.upstream_origin))
            .collect::<Vec<_>>()
            .join(", "),
        users = app.users.count(),
        "vestibule serving"
    );
    let shutdown = async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let stop = async move {
            match stop {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
            _ = stop => {},
        }
        tracing::info!("shutdown signal received");
    };
    let settings = accept::Settings {
        max_connections: app.cfg.server.max_connections,
        max_request_header_bytes: app.cfg.server.max_request_header_bytes,
        metrics: app.metrics.clone(),
    };
    accept::server::run(app, settings, listener, tls, shutdown).await;
    Ok(())
}

/// Background work for logs and metrics: the audit file reopened on SIGHUP (log
/// rotation; the TLS reloader listens to the same signal for itself), the daily
/// certificate-expiry check, and the metrics upkeep that keeps histograms bounded.
fn spawn_observability(app: Arc<App>, tls: bool) {
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        let app = app.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Opening and reading the old file's end is file work: off the workers.
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || app.audit.reopen()).await;
            }
        });
    }
    if tls {
        tokio::spawn(app.cert_expiry.clone().watch());
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            app.metrics.upkeep();
        }
    });
}

/// Background work: the users-file watcher and the purge of expired records.
fn spawn_maintenance(app: Arc<App>) {
    let keys_app = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let app = keys_app.clone();
            let _ = tokio::task::spawn_blocking(move || {
                app.keys.reload_if_changed();
                if let Some(a) = &app.assertions {
                    a.reload_if_changed();
                }
            })
            .await;
        }
    });
    match &app.user_upkeep {
        crate::app::UserUpkeep::File(handle) => {
            let watcher_app = app.clone();
            tokio::spawn(handle.clone().watch(move |change| {
                let app = watcher_app.clone();
                async move {
                    for user in change.newly_disabled {
                        let sessions = app.store.sessions_delete_user(&user).await;
                        let devices = app.store.devices_forget(&user).await;
                        if sessions.is_err() || devices.is_err() {
                            tracing::error!(user = %user, "could not end sessions of a disabled user; they stop working anyway");
                        }
                    }
                }
            }));
        }
        crate::app::UserUpkeep::Ldap(dir) => {
            tokio::spawn(super::directory::refresh_forever(app.clone(), dir.clone()));
        }
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = app.store.purge_expired(now_ms()).await {
                tracing::warn!(error = %e, "purge of expired records failed");
            }
        }
    });
}
