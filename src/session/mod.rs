//! Turns the session cookie into a session (or none), issues and rotates session ids,
//! and enforces the idle and absolute timeouts on the server. It never answers the
//! client itself.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::core::auth_flow::Stage;
use crate::core::store::{Fingerprint, SessionRecord, Store, StoreError};
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
    cookie: String,
    tls: bool,
    idle_ms: u64,
    absolute_ms: u64,
    touch_every_ms: u64,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        cookie_base: &str,
        tls: bool,
        idle: Duration,
        absolute: Duration,
    ) -> Self {
        let idle_ms = idle.as_millis() as u64;
        Self {
            store,
            cookie: cookies::wire_name(cookie_base, tls),
            tls,
            idle_ms,
            absolute_ms: absolute.as_millis() as u64,
            // "Last seen" writes are throttled: at most one per quarter of the idle timeout.
            touch_every_ms: (idle_ms / 4).clamp(250, 60_000),
        }
    }

    /// The session cookie's name on the wire.
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    /// The raw id fingerprint from the request's cookie, if it has a well-formed one.
    pub fn presented(&self, headers: &HeaderMap) -> Option<Fingerprint> {
        cookies::get(headers, &self.cookie)
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
        let idle_expired = now_ms.saturating_sub(record.last_seen_ms) > self.idle_ms;
        let absolute_expired = now_ms.saturating_sub(record.created_ms) > self.absolute_ms;
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
        if idle_expired || absolute_expired {
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.session_delete(&id).await;
            });
            return Ok(None);
        }
        if activity && now_ms.saturating_sub(record.last_seen_ms) >= self.touch_every_ms {
            let store = self.store.clone();
            let ttl = self.idle_ms;
            tokio::spawn(async move {
                let _ = store.session_touch(&id, now_ms, ttl).await;
            });
        }
        Ok(Some(Current { id, record, user }))
    }

    /// Starts a session at `stage` under a new id (ending `previous`, whatever cookie
    /// the browser brought, if any): the sign-in's first step. Later privilege changes
    /// use [`Sessions::rotate`]. Returns the `Set-Cookie` value.
    pub async fn issue(
        &self,
        user: &User,
        stage: Stage,
        previous: Option<&Fingerprint>,
        created_ms: Option<u64>,
        now_ms: u64,
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
        };
        self.store
            .session_put(&fingerprint(&token), &rec, self.idle_ms)
            .await?;
        Ok(cookies::set(&self.cookie, &token, self.tls, None))
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
        let Some((cookie, id)) = self.rotate_to_new_id(cur, stage, None, now_ms).await? else {
            return Ok(None);
        };
        self.store
            .sessions_delete_others(&cur.user.username, &id)
            .await?;
        Ok(Some(cookie))
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
        let rec = SessionRecord {
            user: cur.user.username.clone(),
            stage,
            created_ms: created_ms.unwrap_or(now_ms),
            last_seen_ms: now_ms,
            credential: cur.user.credential_fingerprint(),
        };
        let rotated = self
            .store
            .session_rotate(&cur.id, &id, &rec, self.idle_ms)
            .await?;
        Ok(rotated.then(|| (cookies::set(&self.cookie, &token, self.tls, None), id)))
    }

    /// Ends a session on the server.
    pub async fn end(&self, id: &Fingerprint) -> Result<(), StoreError> {
        self.store.session_delete(id).await
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        cookies::clear(&self.cookie, self.tls)
    }

    /// When the session will end at the latest, for `P/api/session`.
    pub fn expires_at_ms(&self, rec: &SessionRecord) -> u64 {
        (rec.last_seen_ms + self.idle_ms).min(rec.created_ms + self.absolute_ms)
    }
}
