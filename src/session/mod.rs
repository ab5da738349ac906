//! Turns the session cookie into a session (or none), issues and rotates session ids,
//! and enforces the idle and absolute timeouts on the server. It never answers the
//! client itself.

mod listing;

pub(crate) use listing::HANDLE_PURPOSE;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::config::RoleTimeout;
use crate::core::auth_flow::Stage;
use crate::core::store::{Fingerprint, SessionMeta, SessionRecord, Store, StoreError};
use crate::core::tokens::{fingerprint, looks_like_token, new_token};
use crate::core::user::User;
use crate::http::cookies;
use crate::users::source::{Holder, SourceError, UserSource};

/// A valid session of a known, enabled user.
pub struct Current {
    pub id: Fingerprint,
    pub record: SessionRecord,
    pub user: Arc<User>,
}

/// The idle and absolute timeouts that apply to one user's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub idle_ms: u64,
    pub absolute_ms: u64,
}

impl Limits {
    /// "Last seen" writes are throttled: at most one per quarter of the idle timeout.
    fn touch_every_ms(self) -> u64 {
        (self.idle_ms / 4).clamp(250, 60_000)
    }
}

/// Why a session could not be loaded: fail closed, 503.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session's holder could not be confirmed with the directory (SPEC §11).
    #[error("directory unavailable: {0}")]
    Directory(String),
}

/// Session handling, configured once.
pub struct Sessions {
    store: Arc<dyn Store>,
    cookie: cookies::OwnCookie,
    idle_ms: u64,
    absolute_ms: u64,
    /// `[[session.role_timeouts]]`: (role, idle, absolute), a missing value being the
    /// `[session]` one. Empty (the default): every user gets `[session]`'s values.
    role_limits: Vec<(String, Limits)>,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        cookie_base: &str,
        tls: bool,
        idle: Duration,
        absolute: Duration,
    ) -> Self {
        Self {
            store,
            cookie: cookies::OwnCookie::new(cookie_base, tls, None),
            idle_ms: idle.as_millis() as u64,
            absolute_ms: absolute.as_millis() as u64,
            role_limits: Vec::new(),
        }
    }

    /// Scopes the session cookie to `domain` and its subdomains (`session.cookie_domain`).
    pub(crate) fn with_cookie_domain(
        mut self,
        domain: Option<&str>,
        base: &str,
        tls: bool,
    ) -> Self {
        self.cookie = cookies::OwnCookie::new(base, tls, domain);
        self
    }

    /// Adds `[[session.role_timeouts]]`.
    pub fn with_role_timeouts(mut self, roles: &[RoleTimeout]) -> Self {
        self.role_limits = roles
            .iter()
            .map(|r| {
                let ms = |d: Option<Duration>, default| {
                    d.map(|d| d.as_millis() as u64).unwrap_or(default)
                };
                (
                    r.role.clone(),
                    Limits {
                        idle_ms: ms(r.idle_timeout, self.idle_ms),
                        absolute_ms: ms(r.absolute_timeout, self.absolute_ms),
                    },
                )
            })
            .collect();
        self
    }

    /// The timeouts of `user`'s sessions: the strictest (shortest) of their roles'
    /// values, a role without an entry counting with `[session]`'s. Without role
    /// timeouts configured this is a field read.
    pub fn limits(&self, user: &User) -> Limits {
        let default = Limits {
            idle_ms: self.idle_ms,
            absolute_ms: self.absolute_ms,
        };
        if self.role_limits.is_empty() || user.roles.is_empty() {
            return default;
        }
        let mut out: Option<Limits> = None;
        for role in &user.roles {
            let l = self
                .role_limits
                .iter()
                .find(|(r, _)| r == role)
                .map(|(_, l)| *l)
                .unwrap_or(default);
            out = Some(match out {
                None => l,
                Some(o) => Limits {
                    idle_ms: o.idle_ms.min(l.idle_ms),
                    absolute_ms: o.absolute_ms.min(l.absolute_ms),
                },
            });
        }
        out.unwrap_or(default)
    }

    /// The session cookie's name on the wire.
    pub fn cookie_name(&self) -> &str {
        self.cookie.name()
    }

    /// The raw id fingerprint from the request's cookie, if it has a well-formed one.
    pub fn presented(&self, headers: &HeaderMap) -> Option<Fingerprint> {
        self.cookie
            .get(headers)
            .filter(|v| looks_like_token(v))
            .map(fingerprint)
    }

    /// Loads the request's session: one store lookup. Expired, revoked, disabled or
    /// password-changed sessions are `None`. Store errors propagate (fail closed).
    pub async fn load(
        &self,
        headers: &HeaderMap,
        users: &dyn UserSource,
        now_ms: u64,
    ) -> Result<Option<Current>, LoadError> {
        let Some(id) = self.presented(headers) else {
            return Ok(None);
        };
        self.load_id(id, users, now_ms, true).await
    }

    /// Loads a session again by its fingerprint, with the same checks as [`Self::load`]
    /// but without counting as the user's activity: an open WebSocket asks this
    /// periodically, and a tunnel must not keep its session from expiring.
    pub async fn recheck(
        &self,
        id: &Fingerprint,
        users: &dyn UserSource,
        now_ms: u64,
    ) -> Result<Option<Current>, LoadError> {
        self.load_id(*id, users, now_ms, false).await
    }

    async fn load_id(
        &self,
        id: Fingerprint,
        users: &dyn UserSource,
        now_ms: u64,
        activity: bool,
    ) -> Result<Option<Current>, LoadError> {
        let Some(record) = self.store.session_get(&id).await? else {
            return Ok(None);
        };
        let user = match users.holder(&record.user, &record.credential) {
            Holder::User(u) => u,
            Holder::Void => return Ok(None),
            Holder::Unavailable => {
                return Err(LoadError::Directory(
                    "the user could not be confirmed at the last refresh".into(),
                ));
            }
            Holder::Ask => match users.fetch_holder(&record.user, &record.credential).await {
                Ok(Some(u)) => u,
                Ok(None) => return Ok(None),
                Err(SourceError::DirectoryUnavailable(d)) => return Err(LoadError::Directory(d)),
                Err(e) => return Err(LoadError::Directory(e.to_string())),
            },
        };
        let limits = self.limits(&user);
        let idle_expired = now_ms.saturating_sub(record.last_seen_ms) > limits.idle_ms;
        let absolute_expired = now_ms.saturating_sub(record.created_ms) > limits.absolute_ms;
        if idle_expired || absolute_expired {
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.session_delete(&id).await;
            });
            return Ok(None);
        }
        if activity && now_ms.saturating_sub(record.last_seen_ms) >= limits.touch_every_ms() {
            let store = self.store.clone();
            let ttl = limits.idle_ms;
            tokio::spawn(async move {
                let _ = store.session_touch(&id, now_ms, ttl).await;
            });
        }
        Ok(Some(Current { id, record, user }))
    }

    /// Starts a session at `stage` under a new id (ending `previous`, whatever cookie
    /// the browser brought, if any): the sign-in's first step. Later privilege changes
    /// use [`Sessions::rotate`]. `meta` says where the sign-in came from. Returns the
    /// `Set-Cookie` value.
    pub async fn issue(
        &self,
        user: &User,
        stage: Stage,
        previous: Option<&Fingerprint>,
        created_ms: Option<u64>,
        now_ms: u64,
        meta: SessionMeta,
    ) -> Result<String, StoreError> {
        if let Some(old) = previous {
            self.store.session_delete(old).await?;
        }
        let token = new_token();
        let rec = SessionRecord {
            user: user.username.clone(),
            stage,
            created_ms: created_ms.unwrap_or(now_ms),
            last_seen_ms: now_ms,
            credential: user.credential_fingerprint(),
            meta,
        };
        self.store
            .session_put(&fingerprint(&token), &rec, self.limits(user).idle_ms)
            .await?;
        Ok(self.cookie.set(&token, None))
    }

    /// Moves the session `cur` to a new id at `stage` (a privilege change: second
    /// factor done, 2FA turned on or off), keeping its start time when `created_ms` says
    /// so. `None` when the session ended meanwhile — a revoke or logout that got there
    /// first wins, and nothing is stored. Otherwise the `Set-Cookie` value.
    pub async fn rotate(
        &self,
        cur: &Current,
        stage: Stage,
        created_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .rotate_to_new_id(cur, stage, created_ms, now_ms)
            .await?
            .map(|(cookie, _)| cookie))
    }

    /// As [`Sessions::rotate`], and then ends every other session of the user (turning
    /// 2FA on: a session elsewhere that was complete with the password alone must sign
    /// in again). The rotation comes first, so a revoke racing it still wins.
    pub async fn rotate_ending_others(
        &self,
        cur: &Current,
        stage: Stage,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .rotate_ending_others_since(cur, stage, None, now_ms)
            .await?
            .map(|(cookie, _)| cookie))
    }

    /// As [`Sessions::rotate_ending_others`], keeping the session's start when
    /// `created_ms` says so (a password change); also says how many others ended.
    pub async fn rotate_ending_others_since(
        &self,
        cur: &Current,
        stage: Stage,
        created_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let Some((cookie, id)) = self
            .rotate_to_new_id(cur, stage, created_ms, now_ms)
            .await?
        else {
            return Ok(None);
        };
        let ended = self
            .store
            .sessions_delete_others(&cur.user.username, &id)
            .await?;
        Ok(Some((cookie, ended)))
    }

    /// The rotation itself: the `Set-Cookie` value and the new session's fingerprint.
    async fn rotate_to_new_id(
        &self,
        cur: &Current,
        stage: Stage,
        created_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<(String, Fingerprint)>, StoreError> {
        let token = new_token();
        let id = fingerprint(&token);
        let mut meta = cur.record.meta.clone();
        // A rotation to a stage reached with a code or a key is a fresh proof.
        if let Stage::Complete {
            factor: Some(factor),
        } = stage
            && factor.is_fresh_proof()
        {
            meta.factor_ms = Some(now_ms);
        }
        let rec = SessionRecord {
            user: cur.user.username.clone(),
            stage,
            created_ms: created_ms.unwrap_or(now_ms),
            last_seen_ms: now_ms,
            credential: cur.user.credential_fingerprint(),
            meta,
        };
        let rotated = self
            .store
            .session_rotate(&cur.id, &id, &rec, self.limits(&cur.user).idle_ms)
            .await?;
        Ok(rotated.then(|| (self.cookie.set(&token, None), id)))
    }

    /// Ends a session on the server.
    pub async fn end(&self, id: &Fingerprint) -> Result<(), StoreError> {
        self.store.session_delete(id).await
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        self.cookie.clear()
    }

    /// When the session will end at the latest, for `P/api/session`.
    pub fn expires_at_ms(&self, cur: &Current) -> u64 {
        let l = self.limits(&cur.user);
        (cur.record.last_seen_ms + l.idle_ms).min(cur.record.created_ms + l.absolute_ms)
    }
}
