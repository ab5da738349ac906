//! The network side of the directory: encrypted connections (LDAPS or StartTLS,
//! rustls, the system CAs plus `ldap.ca_file`), fail-over across `ldap.url` in order,
//! one pooled service-account connection shared by every search (LDAP multiplexes
//! requests on it), and each user's bind on its own short-lived connection, so a
//! user's identity never lingers on the shared one. Everything is async (tokio) and
//! bounded by `ldap.timeout`; no password is hashed here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use zeroize::Zeroizing;

use super::setup::{SetupError, bind_password, tls_config};
use crate::config::LdapConfig;

/// After every server failed, further requests are answered "unavailable" at once for
/// this long instead of each waiting out the timeouts again.
const BACKOFF: Duration = Duration::from_secs(1);

/// LDAP result codes that mean "this server cannot serve now": try the next one.
const BUSY: u32 = 51;
const UNAVAILABLE: u32 = 52;
/// `invalidCredentials`: the normal answer to a wrong password.
const INVALID_CREDENTIALS: u32 = 49;
/// `sizeLimitExceeded`: more entries matched than asked for.
const SIZE_LIMIT_EXCEEDED: u32 = 4;
/// `noSuchObject`: the search base does not exist.
const NO_SUCH_OBJECT: u32 = 32;

/// No server answered (or every one refused to serve): the caller answers 503.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unavailable(pub String);

/// One entry of a search: its DN and text attributes.
pub(crate) struct Entry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<String>>,
}

/// How a search for a user ended.
pub(crate) enum UserSearch {
    None,
    One(Entry),
    /// More than one entry matched: refused, never guessed.
    Ambiguous,
}

/// The pooled service connection, or why there is none.
#[derive(Default)]
struct Pool {
    /// The connection and the index of its server in `ldap.url`.
    conn: Option<(usize, Ldap)>,
    /// Every server failed; answer "unavailable" until then.
    down_until: Option<Instant>,
}

/// The directory client, built once.
pub(crate) struct Client {
    urls: Vec<String>,
    settings: LdapConnSettings,
    bind_dn: String,
    bind_password: Zeroizing<String>,
    base_dn: String,
    timeout: Duration,
    pool: tokio::sync::Mutex<Pool>,
}

/// Whether `e` says the server (or the way to it) failed, rather than answering.
fn is_transport(e: &LdapError) -> bool {
    match e {
        LdapError::LdapResult { result } => matches!(result.rc, BUSY | UNAVAILABLE),
        _ => true,
    }
}

/// An entry from the wire; `None` for a referral or an entry ldap3 cannot parse (its
/// parser panics on malformed input, which must not take the request down).
fn entry(re: ldap3::ResultEntry) -> Option<Entry> {
    if re.is_ref() {
        return None;
    }
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(re)))
        .ok()?;
    Some(Entry {
        dn: e.dn,
        attrs: e.attrs,
    })
}

impl Client {
    /// The client for `cfg`; connects lazily.
    pub(crate) fn new(cfg: &LdapConfig) -> Result<Self, SetupError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(cfg.timeout)
            .set_starttls(cfg.start_tls)
            .set_config(Arc::new(tls_config(cfg)?));
        Ok(Self {
            urls: cfg.urls.clone(),
            settings,
            bind_dn: cfg.bind_dn.clone(),
            bind_password: bind_password(cfg)?,
            base_dn: cfg.base_dn.clone(),
            timeout: cfg.timeout,
            pool: tokio::sync::Mutex::new(Pool::default()),
        })
    }

    /// A new connection to server `i` (TLS established, not bound).
    async fn connect(&self, i: usize) -> Result<Ldap, LdapError> {
        let (conn, ldap) =
            LdapConnAsync::with_settings(self.settings.clone(), &self.urls[i]).await?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// A new connection to server `i`, bound as the service account.
    async fn open_service(&self, i: usize) -> Result<Ldap, LdapError> {
        let mut ldap = self.connect(i).await?;
        ldap.with_timeout(self.timeout)
            .simple_bind(&self.bind_dn, &self.bind_password)
            .await?
            .success()?;
        Ok(ldap)
    }

    /// The pooled service connection: the open one, or a new one from the first
    /// server in `ldap.url` order that answers and accepts the service account.
    async fn service(&self) -> Result<(usize, Ldap), Unavailable> {
        let mut pool = self.pool.lock().await;
        if let Some((i, l)) = pool.conn.as_mut() {
            if !l.is_closed() {
                return Ok((*i, l.clone()));
            }
            tracing::warn!(server = %self.urls[*i], "directory connection closed; reconnecting");
        }
        pool.conn = None;
        if pool.down_until.is_some_and(|t| Instant::now() < t) {
            return Err(Unavailable(
                "no directory server answered a moment ago".into(),
            ));
        }
        let mut why = Vec::new();
        for i in 0..self.urls.len() {
            match self.open_service(i).await {
                Ok(l) => {
                    if i > 0 || !why.is_empty() {
                        tracing::warn!(server = %self.urls[i], "directory fail-over: using this server");
                    }
                    pool.conn = Some((i, l.clone()));
                    pool.down_until = None;
                    return Ok((i, l));
                }
                Err(e) => {
                    tracing::warn!(server = %self.urls[i], error = %e, "directory server unavailable");
                    why.push(format!("{}: {e}", self.urls[i]));
                }
            }
        }
        pool.down_until = Some(Instant::now() + BACKOFF);
        Err(Unavailable(why.join("; ")))
    }

    /// Forgets the service connection to server `i` after it failed.
    async fn drop_service(&self, i: usize) {
        let mut pool = self.pool.lock().await;
        if pool.conn.as_ref().is_some_and(|(j, _)| *j == i) {
            pool.conn = None;
        }
    }

    /// Runs `op` on the service connection; a transport failure drops the connection
    /// and tries once more (on the next server that answers).
    async fn with_service<T, F, Fut>(&self, op: F) -> Result<(usize, T), Unavailable>
    where
        F: Fn(Ldap) -> Fut,
        Fut: std::future::Future<Output = Result<T, LdapError>>,
    {
        let mut last = String::new();
        for _ in 0..2 {
            let (i, ldap) = self.service().await?;
            match op(ldap).await {
                Ok(v) => return Ok((i, v)),
                Err(e) if is_transport(&e) => {
                    tracing::warn!(server = %self.urls[i], error = %e, "directory request failed");
                    last = format!("{}: {e}", self.urls[i]);
                    self.drop_service(i).await;
                }
                Err(e) => return Err(Unavailable(format!("{}: {e}", self.urls[i]))),
            }
        }
        Err(Unavailable(last))
    }

    /// Binds once with the service account (`check-config`).
    pub(crate) async fn check(&self) -> Result<String, Unavailable> {
        let (i, _) = self.service().await?;
        Ok(self.urls[i].clone())
    }

    /// Searches `ldap.base_dn` with `filter`, asking for `attrs`; at most one entry.
    pub(crate) async fn find_user(
        &self,
        filter: &str,
        attrs: &[&str],
    ) -> Result<(usize, UserSearch), Unavailable> {
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        self.with_service(|mut ldap| {
            let attrs = attrs.clone();
            async move {
                let res = ldap
                    .with_search_options(SearchOptions::new().sizelimit(2))
                    .with_timeout(self.timeout)
                    .search(&self.base_dn, Scope::Subtree, filter, attrs)
                    .await?;
                let ldap3::SearchResult(entries, result) = res;
                if result.rc == SIZE_LIMIT_EXCEEDED {
                    return Ok(UserSearch::Ambiguous);
                }
                if result.rc == NO_SUCH_OBJECT {
                    tracing::error!(base_dn = %self.base_dn, "ldap.base_dn does not exist in the directory");
                    return Ok(UserSearch::None);
                }
                if result.rc != 0 {
                    return Err(LdapError::LdapResult { result });
                }
                let mut found: Vec<Entry> = entries.into_iter().filter_map(entry).collect();
                Ok(match found.len() {
                    0 => UserSearch::None,
                    1 => UserSearch::One(found.remove(0)),
                    _ => UserSearch::Ambiguous,
                })
            }
        })
        .await
    }

    /// Every entry `filter` matches under `ldap.base_dn` (for `users list`; the
    /// server's own size limit applies, 1000 entries on Active Directory by default).
    pub(crate) async fn search_all(
        &self,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Entry>, Unavailable> {
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let (_, found) = self
            .with_service(|mut ldap| {
                let attrs = attrs.clone();
                async move {
                    let ldap3::SearchResult(entries, result) = ldap
                        .with_timeout(self.timeout)
                        .search(&self.base_dn, Scope::Subtree, filter, attrs)
                        .await?;
                    if result.rc != 0 && result.rc != SIZE_LIMIT_EXCEEDED {
                        return Err(LdapError::LdapResult { result });
                    }
                    Ok(entries.into_iter().filter_map(entry).collect::<Vec<_>>())
                }
            })
            .await?;
        Ok(found)
    }

    /// Whether the group at `group_dn` matches `filter` (a base-scope search of the
    /// group itself). A group that does not exist matches nothing, and is logged.
    pub(crate) async fn group_matches(
        &self,
        group_dn: &str,
        filter: &str,
    ) -> Result<bool, Unavailable> {
        let (_, hit) = self
            .with_service(|mut ldap| async move {
                let res = ldap
                    .with_timeout(self.timeout)
                    .search(group_dn, Scope::Base, filter, vec!["1.1"])
                    .await?;
                let ldap3::SearchResult(entries, result) = res;
                if result.rc == NO_SUCH_OBJECT {
                    tracing::warn!(group = %group_dn, "a group of ldap.group_roles does not exist in the directory");
                    return Ok(false);
                }
                if result.rc != 0 {
                    return Err(LdapError::LdapResult { result });
                }
                Ok(entries.iter().any(|e| !e.is_ref()))
            })
            .await?;
        Ok(hit)
    }

    /// Binds as `dn` with `password` on a new connection to server `i` (falling over
    /// to the others if it fails), closed afterwards. `Ok(false)`: the directory said
    /// no (wrong password, or an account it will not let in).
    pub(crate) async fn bind_as(
        &self,
        i: usize,
        dn: &str,
        password: &str,
    ) -> Result<bool, Unavailable> {
        // An empty password would be an unauthenticated bind, which many servers
        // accept: never a sign-in.
        if password.is_empty() || dn.is_empty() {
            return Ok(false);
        }
        let mut why = Vec::new();
        let order = (0..self.urls.len()).map(|k| (i + k) % self.urls.len());
        for j in order {
            let mut ldap = match self.connect(j).await {
                Ok(l) => l,
                Err(e) => {
                    why.push(format!("{}: {e}", self.urls[j]));
                    continue;
                }
            };
            let res = ldap
                .with_timeout(self.timeout)
                .simple_bind(dn, password)
                .await;
            let _ = ldap.unbind().await;
            match res {
                Ok(r) if r.rc == 0 => return Ok(true),
                Ok(r) if r.rc == INVALID_CREDENTIALS => return Ok(false),
                Ok(r) if matches!(r.rc, BUSY | UNAVAILABLE) => {
                    why.push(format!("{}: result code {}", self.urls[j], r.rc));
                }
                Ok(r) => {
                    tracing::info!(server = %self.urls[j], rc = r.rc, "directory refused a user's bind");
                    return Ok(false);
                }
                Err(e) => why.push(format!("{}: {e}", self.urls[j])),
            }
        }
        Err(Unavailable(why.join("; ")))
    }

    /// The base DN searched (for a decoy DN beneath it).
    pub(crate) fn base_dn(&self) -> &str {
        &self.base_dn
    }
}
