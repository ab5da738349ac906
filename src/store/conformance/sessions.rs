//! Session checks of the conformance suite that need concurrency: a revoke is atomic
//! against sign-ins racing it, and a rotation never outlives the session it replaces.

use std::sync::Arc;

use crate::core::auth_flow::Stage;
use crate::core::store::{SessionRecord, Store};

/// A fresh password-done session of `user`.
fn session(user: &str) -> SessionRecord {
    let now = crate::core::clock::now_ms();
    SessionRecord {
        user: user.into(),
        stage: Stage::PasswordDone,
        created_ms: now,
        last_seen_ms: now,
        credential: [1; 8],
        meta: Default::default(),
    }
}

/// A distinct session id fingerprint per number.
fn id(n: u32) -> [u8; 32] {
    let mut id = [0x5a; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

/// Runs every session concurrency check against `s`.
pub(super) async fn run_all(s: Arc<dyn Store>) {
    a_revoke_racing_sign_ins_leaves_nothing_unrevocable(s.clone()).await;
    a_rotation_needs_the_session_it_replaces(&*s).await;
}

/// Sign-ins land while a revoke of the same user runs. Each must be either ended by
/// it or listed for the next one: after a second revoke, none of them may remain.
async fn a_revoke_racing_sign_ins_leaves_nothing_unrevocable(s: Arc<dyn Store>) {
    // Many sessions already there make the revoke take a while: the window in which a
    // non-atomic revoke drops a new sign-in from the user's index.
    for n in 0..300 {
        s.session_put(&id(n), &session("eve"), 600_000)
            .await
            .unwrap();
    }
    let revoke = {
        let s = s.clone();
        tokio::spawn(async move { s.sessions_delete_user("eve").await.unwrap() })
    };
    let sign_ins: Vec<_> = (0..4)
        .map(|lane| {
            let s = s.clone();
            tokio::spawn(async move {
                for n in 0..40 {
                    let n = 1000 + lane * 100 + n;
                    s.session_put(&id(n), &session("eve"), 600_000)
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let first = revoke.await.unwrap();
    for t in sign_ins {
        t.await.unwrap();
    }
    assert!(
        first >= 300,
        "the revoke ended the sessions there before it"
    );
    s.sessions_delete_user("eve").await.unwrap();
    let mut left = vec![];
    for n in (0..300).chain((0..4).flat_map(|lane| (0..40).map(move |n| 1000 + lane * 100 + n))) {
        if s.session_get(&id(n)).await.unwrap().is_some() {
            left.push(n);
        }
    }
    assert!(
        left.is_empty(),
        "sessions that escaped two revokes (lost from the user's index): {left:?}"
    );
}

/// A new id at a privilege change is stored only while the old session still exists:
/// a revoke or logout that came first wins.
async fn a_rotation_needs_the_session_it_replaces(s: &dyn Store) {
    let rec = SessionRecord {
        stage: Stage::Complete { factor: None },
        ..session("finn")
    };
    s.session_put(&id(1), &session("finn"), 600_000)
        .await
        .unwrap();
    s.sessions_delete_user("finn").await.unwrap();
    assert!(
        !s.session_rotate(&id(1), &id(2), &rec, 600_000)
            .await
            .unwrap()
    );
    assert!(
        s.session_get(&id(2)).await.unwrap().is_none(),
        "revoked first"
    );

    s.session_put(&id(3), &session("finn"), 600_000)
        .await
        .unwrap();
    s.session_delete(&id(3)).await.unwrap();
    assert!(
        !s.session_rotate(&id(3), &id(4), &rec, 600_000)
            .await
            .unwrap()
    );
    assert!(
        s.session_get(&id(4)).await.unwrap().is_none(),
        "signed out first"
    );

    s.session_put(&id(5), &session("finn"), 600_000)
        .await
        .unwrap();
    assert!(
        s.session_rotate(&id(5), &id(6), &rec, 600_000)
            .await
            .unwrap()
    );
    assert!(
        s.session_get(&id(5)).await.unwrap().is_none(),
        "old id ended"
    );
    assert_eq!(s.session_get(&id(6)).await.unwrap(), Some(rec.clone()));
    assert_eq!(
        s.sessions_delete_user("finn").await.unwrap(),
        1,
        "the rotated session is revocable"
    );
    assert!(s.session_get(&id(6)).await.unwrap().is_none());
}
