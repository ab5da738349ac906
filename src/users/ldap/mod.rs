//! Users from a directory (LDAP / Active Directory, SPEC §11). The password step
//! searches the user with the service account, reads their mapped groups, then binds
//! as them with the typed password on a connection of its own; nothing is hashed here.
//!
//! Signed-in users are kept in memory (the hot path reads a session's holder without
//! I/O) and re-read every `ldap.refresh`: a user removed, disabled, moved or whose
//! mapped groups changed leaves the cache, and their sessions and remembered browsers
//! are ended. When the directory cannot be re-read, the users it could not confirm
//! answer 503 until a refresh succeeds. A session this instance has not seen (signed in
//! on another instance, or before a restart) is read from the directory on its first
//! request.

mod client;
pub(crate) mod entry;
mod setup;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::config::LdapConfig;
use crate::core::clock::now_ms;
use crate::core::user::{User, lockout_key};
use crate::users::source::{Checked, Holder, Refusal, SourceError, UserSource};
pub(crate) use client::Unavailable;
use client::{Client, UserSearch};
use entry::Found;
pub(crate) use setup::SetupError;

/// One signed-in user as last read from the directory.
struct Cached {
    user: Arc<User>,
    credential: [u8; 8],
    /// The last refresh could not confirm this user: their sessions answer 503.
    stale: bool,
    /// When a session last used this entry (ms); unused entries are dropped.
    last_used_ms: AtomicU64,
}

/// What one refresh found, for the caller to act on.
#[derive(Debug, Default)]
pub(crate) struct Refreshed {
    /// Users now gone (removed, disabled, unusable) or changed (moved, other groups):
    /// their sessions and remembered browsers must end.
    pub ended: Vec<(String, &'static str)>,
}

/// The directory as a [`UserSource`].
pub(crate) struct LdapDirectory {
    client: Client,
    cfg: LdapConfig,
    cache: RwLock<HashMap<String, Cached>>,
    /// Entries unused for this long leave the cache (read again on demand).
    keep_unused_ms: u64,
}

impl LdapDirectory {
    /// The directory of `cfg`; `keep_unused` is the session idle timeout (an entry no
    /// session used for that long can belong to no live session).
    pub(crate) fn new(cfg: &LdapConfig, keep_unused: Duration) -> Result<Self, SetupError> {
        Ok(Self {
            client: Client::new(cfg)?,
            cfg: cfg.clone(),
            cache: RwLock::new(HashMap::new()),
            keep_unused_ms: keep_unused.as_millis() as u64,
        })
    }

    /// Binds once with the service account; the server that accepted it.
    pub(crate) async fn check(&self) -> Result<String, Unavailable> {
        self.client.check().await
    }

    /// How often signed-in users are re-read.
    pub(crate) fn refresh_every(&self) -> Duration {
        self.cfg.refresh
    }

    /// Reads one user from the directory: the entry `user_filter` finds for `name`
    /// (escaped), and the mapped groups it belongs to. `Ok(None)`: no such entry, more
    /// than one, or one that cannot be a user (logged). Also the server index.
    async fn lookup(&self, name: &str) -> Result<Option<(usize, Found)>, Unavailable> {
        let filter = entry::user_filter(&self.cfg.user_filter, name);
        let attrs = [
            self.cfg.username_attribute.as_str(),
            self.cfg.display_name_attribute.as_str(),
            self.cfg.email_attribute.as_str(),
            entry::USER_ACCOUNT_CONTROL,
        ];
        let (server, found) = self.client.find_user(&filter, &attrs).await?;
        let e = match found {
            UserSearch::None => return Ok(None),
            UserSearch::Ambiguous => {
                tracing::warn!(filter = %filter, "ldap.user_filter matched more than one entry; refused");
                return Ok(None);
            }
            UserSearch::One(e) => e,
        };
        let roles = self.roles_of(&e.dn).await?;
        match entry::to_user(
            &e.dn,
            &e.attrs,
            roles,
            &self.cfg.username_attribute,
            &self.cfg.display_name_attribute,
            &self.cfg.email_attribute,
        ) {
            Ok(f) => Ok(Some((server, f))),
            Err(why) => {
                tracing::warn!(dn = %e.dn, problem = %why, "directory entry cannot sign in");
                Ok(None)
            }
        }
    }

    /// The roles of the entry `dn`: every mapped group is asked at once (the searches
    /// share the pooled connection, so a sign-in waits for one round trip, not one per
    /// group).
    async fn roles_of(&self, dn: &str) -> Result<Vec<String>, Unavailable> {
        let group_filter = entry::group_filter(dn, self.cfg.nested_groups);
        let answers = futures_util::future::join_all(
            self.cfg
                .group_roles
                .iter()
                .map(|(group, _)| self.client.group_matches(group, &group_filter)),
        )
        .await;
        let mut member_of = Vec::new();
        for (i, a) in answers.into_iter().enumerate() {
            if a? {
                member_of.push(i);
            }
        }
        Ok(entry::roles_of(&self.cfg.group_roles, &member_of))
    }

    /// Puts a confirmed user in the cache.
    fn remember(&self, user: User) -> Arc<User> {
        let user = Arc::new(user);
        let cached = Cached {
            credential: user.credential_fingerprint(),
            user: user.clone(),
            stale: false,
            last_used_ms: AtomicU64::new(now_ms()),
        };
        if let Ok(mut c) = self.cache.write() {
            c.insert(user.username.clone(), cached);
        }
        user
    }

    fn forget(&self, name: &str) {
        if let Ok(mut c) = self.cache.write() {
            c.remove(name);
        }
    }

    /// A bind the directory refuses, made so that an unknown or disabled name costs
    /// about what a known one does (SPEC §6: unknown users cost the same time).
    async fn decoy_bind(&self, server: usize, password: &str) {
        let mut r = [0u8; 12];
        rand::fill(&mut r);
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let dn = format!("cn=vestibule-decoy-{hex},{}", self.client.base_dn());
        let _ = self.client.bind_as(server, &dn, password).await;
    }

    /// Re-reads every cached user once (see the module docs).
    pub(crate) async fn refresh(&self) -> Refreshed {
        let now = now_ms();
        let names: Vec<(String, [u8; 8])> = match self.cache.write() {
            Ok(mut c) => {
                let keep = self.keep_unused_ms;
                c.retain(|_, e| now.saturating_sub(e.last_used_ms.load(Ordering::Relaxed)) <= keep);
                c.iter().map(|(k, e)| (k.clone(), e.credential)).collect()
            }
            Err(_) => return Refreshed::default(),
        };
        let mut out = Refreshed::default();
        for (name, credential) in names {
            match self.lookup(&name).await {
                Ok(Some((_, f))) if !f.disabled && f.user.username == name => {
                    let changed = f.user.credential_fingerprint() != credential;
                    let last_used = self.last_used(&name);
                    let user = self.remember(f.user);
                    if let Some(t) = last_used {
                        self.touch(&user.username, t);
                    }
                    if changed {
                        out.ended
                            .push((name, "moved or groups changed in the directory"));
                    }
                }
                Ok(Some((_, f))) if f.disabled => {
                    self.forget(&name);
                    out.ended.push((name, "account disabled in the directory"));
                }
                Ok(_) => {
                    self.forget(&name);
                    out.ended.push((name, "account removed from the directory"));
                }
                Err(e) => {
                    let n = self.mark_stale();
                    tracing::error!(error = %e, users = n, "directory unavailable at refresh; the sessions of users it could not confirm answer 503 until it returns");
                    break;
                }
            }
        }
        out
    }

    fn last_used(&self, name: &str) -> Option<u64> {
        let c = self.cache.read().ok()?;
        c.get(name).map(|e| e.last_used_ms.load(Ordering::Relaxed))
    }

    fn touch(&self, name: &str, t: u64) {
        if let Ok(c) = self.cache.read()
            && let Some(e) = c.get(name)
        {
            e.last_used_ms.store(t, Ordering::Relaxed);
        }
    }

    /// Marks every cached user unconfirmed; how many.
    fn mark_stale(&self) -> usize {
        match self.cache.write() {
            Ok(mut c) => {
                for e in c.values_mut() {
                    e.stale = true;
                }
                c.len()
            }
            Err(_) => 0,
        }
    }

    /// Every user the directory returns for `ldap.user_filter` with any name (for
    /// `users list`), sorted by name.
    pub(crate) async fn list(&self) -> Result<Vec<(User, bool)>, Unavailable> {
        // The filter with a wildcard as the name: the one place a `*` is meant.
        let filter = self.cfg.user_filter.replace("{username}", "*");
        let attrs = [
            self.cfg.username_attribute.as_str(),
            self.cfg.display_name_attribute.as_str(),
            self.cfg.email_attribute.as_str(),
            entry::USER_ACCOUNT_CONTROL,
        ];
        let entries = self.client.search_all(&filter, &attrs).await?;
        let mut out = Vec::new();
        for e in entries {
            let roles = self.roles_of(&e.dn).await?;
            if let Ok(f) = entry::to_user(
                &e.dn,
                &e.attrs,
                roles,
                &self.cfg.username_attribute,
                &self.cfg.display_name_attribute,
                &self.cfg.email_attribute,
            ) {
                out.push((f.user, f.disabled));
            }
        }
        out.sort_by(|a, b| a.0.username.cmp(&b.0.username));
        Ok(out)
    }

    /// The canonical name of `name` in the directory (for the admin commands).
    pub(crate) async fn canonical(&self, name: &str) -> Result<Option<String>, Unavailable> {
        Ok(self.lookup(name).await?.map(|(_, f)| f.user.username))
    }
}

#[async_trait::async_trait]
impl UserSource for LdapDirectory {
    async fn check_password(
        &self,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<Checked, SourceError> {
        let unavailable = |e: Unavailable| SourceError::DirectoryUnavailable(e.0);
        let Some((server, found)) = self.lookup(username).await.map_err(unavailable)? else {
            self.decoy_bind(0, &password).await;
            return Ok(Checked::Wrong(Refusal::UnknownUser));
        };
        // The entry must carry the very name typed (case aside): a filter that matched
        // on something else must not let one account be reached under many names (each
        // with its own lockout counter).
        if found.user.username != lockout_key(username) {
            self.decoy_bind(server, &password).await;
            return Ok(Checked::Wrong(Refusal::UnknownUser));
        }
        if found.disabled {
            self.forget(&found.user.username);
            self.decoy_bind(server, &password).await;
            return Ok(Checked::Wrong(Refusal::Disabled));
        }
        if self
            .client
            .bind_as(server, &found.dn, &password)
            .await
            .map_err(unavailable)?
        {
            Ok(Checked::Right(self.remember(found.user)))
        } else {
            // Known from now on for naming audit events (an enabled user, confirmed just
            // now; a session still needs a matching credential to be accepted).
            self.remember(found.user);
            Ok(Checked::Wrong(Refusal::WrongPassword))
        }
    }

    fn known(&self, name: &str) -> Option<Arc<User>> {
        let c = self.cache.read().ok()?;
        c.get(&lockout_key(name)).map(|e| e.user.clone())
    }

    #[inline]
    fn holder(&self, name: &str, credential: &[u8; 8]) -> Holder {
        let Ok(c) = self.cache.read() else {
            return Holder::Unavailable;
        };
        match c.get(name) {
            None => Holder::Ask,
            Some(e) if e.stale => Holder::Unavailable,
            Some(e) if e.credential == *credential => {
                e.last_used_ms.store(now_ms(), Ordering::Relaxed);
                Holder::User(e.user.clone())
            }
            Some(_) => Holder::Void,
        }
    }

    async fn fetch_holder(
        &self,
        name: &str,
        credential: &[u8; 8],
    ) -> Result<Option<Arc<User>>, SourceError> {
        let found = self
            .lookup(name)
            .await
            .map_err(|e| SourceError::DirectoryUnavailable(e.0))?;
        match found {
            Some((_, f)) if !f.disabled && f.user.username == name => {
                let user = self.remember(f.user);
                Ok((user.credential_fingerprint() == *credential).then_some(user))
            }
            _ => Ok(None),
        }
    }

    fn count(&self) -> usize {
        self.cache.read().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory whose only server refuses connections at once (port 1).
    fn unreachable(dir: &std::path::Path, keep_unused: Duration) -> LdapDirectory {
        let pw = dir.join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        let cfg = LdapConfig {
            urls: vec!["ldaps://127.0.0.1:1".into()],
            start_tls: false,
            ca_file: None,
            bind_dn: "cn=svc,dc=x".into(),
            bind_password_file: Some(pw),
            base_dn: "dc=x".into(),
            user_filter: "(uid={username})".into(),
            username_attribute: "uid".into(),
            display_name_attribute: "displayName".into(),
            email_attribute: "mail".into(),
            group_roles: vec![("cn=doctors,dc=x".into(), "doctor".into())],
            nested_groups: false,
            refresh: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        LdapDirectory::new(&cfg, keep_unused).unwrap()
    }

    fn user(name: &str, roles: &[&str]) -> User {
        let mut attrs = HashMap::new();
        attrs.insert("uid".to_string(), vec![name.to_string()]);
        let roles = roles.iter().map(|r| r.to_string()).collect();
        entry::to_user(
            &format!("uid={name},dc=x"),
            &attrs,
            roles,
            "uid",
            "displayName",
            "mail",
        )
        .unwrap()
        .user
    }

    #[tokio::test]
    async fn the_cache_answers_sessions_and_an_unreachable_refresh_turns_them_503() {
        let dir = tempfile::tempdir().unwrap();
        let d = unreachable(dir.path(), Duration::from_secs(3600));
        let doc = d.remember(user("doc", &["doctor"]));
        let cred = doc.credential_fingerprint();
        assert!(matches!(d.holder("doc", &cred), Holder::User(_)));
        assert!(
            matches!(d.holder("doc", &[0; 8]), Holder::Void),
            "other roles or DN"
        );
        assert!(
            matches!(d.holder("pat", &cred), Holder::Ask),
            "not seen here yet"
        );
        assert_eq!(
            d.known("DOC").map(|u| u.username.clone()).as_deref(),
            Some("doc")
        );

        // The directory cannot be read: the refresh ends nobody, but the session can
        // no longer be confirmed.
        let r = d.refresh().await;
        assert!(r.ended.is_empty());
        assert!(matches!(d.holder("doc", &cred), Holder::Unavailable));
        // Unseen users cannot be fetched either: 503, never a guess.
        assert!(matches!(
            d.fetch_holder("pat", &cred).await,
            Err(SourceError::DirectoryUnavailable(_))
        ));
        assert!(matches!(
            d.check_password("doc", Zeroizing::new("pw".into())).await,
            Err(SourceError::DirectoryUnavailable(_))
        ));
        // A sign-in confirmed by the directory again makes the entry fresh.
        d.remember(user("doc", &["doctor"]));
        assert!(matches!(d.holder("doc", &cred), Holder::User(_)));
    }

    #[tokio::test]
    async fn entries_no_session_used_within_the_idle_timeout_leave_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let d = unreachable(dir.path(), Duration::from_millis(0));
        d.remember(user("pat", &[]));
        if let Ok(c) = d.cache.read() {
            c["pat"].last_used_ms.store(0, Ordering::Relaxed);
        }
        assert_eq!(d.count(), 1);
        d.refresh().await;
        assert_eq!(d.count(), 0, "an unused entry stayed (and was refreshed)");
    }
}
