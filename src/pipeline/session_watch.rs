//! Keeps a WebSocket tunnel tied to the session that opened it. The proxy cannot see
//! sessions (it never touches the store); it asks this, every few seconds, whether
//! the tunnel may still run. The answer is the hot path's own decision, made again:
//! the session loaded by its fingerprint (so logout, revoke, idle or absolute expiry,
//! a 2FA reset, a disabled user and a changed password all end it), still complete
//! for the user's current roles, and those roles still admitted by the rule that let
//! the handshake through. Asking does not count as the user's activity.

use std::sync::Arc;

use crate::app::App;
use crate::core::clock::now_ms;
use crate::core::policy;
use crate::core::store::Fingerprint;
use crate::proxy::tunnel::{Revalidate, Verdict};
use crate::signin::next_step::completed;

/// One tunnel's session, re-validated on request.
pub(super) struct SessionWatch {
    app: Arc<App>,
    id: Fingerprint,
    /// The role lists the access rules required (one role of each; empty: none).
    roles: Vec<Vec<String>>,
}

impl SessionWatch {
    pub(super) fn new(app: Arc<App>, id: Fingerprint, roles: policy::Roles<'_>) -> Self {
        Self {
            app,
            id,
            roles: roles.lists().iter().map(|l| l.to_vec()).collect(),
        }
    }
}

#[async_trait::async_trait]
impl Revalidate for SessionWatch {
    async fn check(&self) -> Verdict {
        match self
            .app
            .sessions
            .recheck(&self.id, &*self.app.users, now_ms())
            .await
        {
            Err(_) => Verdict::Unknown,
            Ok(None) => Verdict::Ended,
            Ok(Some(c))
                if completed(c.record.stage, self.app.signin.requires_2fa(&c.user)).is_some()
                    && self
                        .roles
                        .iter()
                        .all(|r| policy::roles_allow(r, &c.user.roles)) =>
            {
                Verdict::Valid
            }
            Ok(Some(_)) => Verdict::Ended,
        }
    }
}
