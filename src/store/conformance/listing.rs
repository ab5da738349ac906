//! Listing checks of the conformance suite (SPEC §12): a user's live sessions and
//! remembered browsers come back with their metadata, only theirs, and sessions that
//! ended or expired are not listed.

use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::store::{DeviceRecord, SessionMeta, SessionRecord, Store};

/// A distinct session id fingerprint per number.
fn id(n: u8) -> [u8; 32] {
    [0x3c ^ n; 32]
}

fn session(user: &str, created_ms: u64, browser: &str) -> SessionRecord {
    SessionRecord {
        user: user.into(),
        stage: Stage::Complete {
            factor: Some(SecondFactor::Totp),
        },
        created_ms,
        last_seen_ms: crate::core::clock::now_ms(),
        credential: [1; 8],
        meta: SessionMeta {
            factor_ms: Some(created_ms),
            address: "192.0.2.7".into(),
            browser: browser.into(),
        },
    }
}

/// Runs every listing check against `s`.
pub(super) async fn run_all(s: &dyn Store) {
    a_users_sessions_are_listed_with_their_metadata(s).await;
    ended_and_expired_sessions_are_not_listed(s).await;
    devices_are_listed_with_their_tokens(s).await;
}

async fn a_users_sessions_are_listed_with_their_metadata(s: &dyn Store) {
    let now = crate::core::clock::now_ms();
    let first = session("lena", now - 2_000, "Firefox on Linux");
    let second = session("lena", now - 1_000, "Safari on iPhone");
    s.session_put(&id(2), &second, 600_000).await.unwrap();
    s.session_put(&id(1), &first, 600_000).await.unwrap();
    s.session_put(&id(3), &session("otto", now, "Edge on Windows"), 600_000)
        .await
        .unwrap();
    let listed = s.sessions_list("lena", now).await.unwrap();
    assert_eq!(
        listed,
        vec![(id(1), first.clone()), (id(2), second.clone())],
        "a user's sessions, oldest first, with their metadata, and nobody else's"
    );
    let otto = s.sessions_list("otto", now).await.unwrap();
    assert_eq!(otto.len(), 1);
    assert_eq!(otto[0].1.meta.browser, "Edge on Windows");
    assert!(s.sessions_list("nobody", now).await.unwrap().is_empty());
    s.sessions_delete_user("lena").await.unwrap();
    s.sessions_delete_user("otto").await.unwrap();
}

async fn ended_and_expired_sessions_are_not_listed(s: &dyn Store) {
    let now = crate::core::clock::now_ms();
    s.session_put(&id(4), &session("mira", now, "a"), 600_000)
        .await
        .unwrap();
    s.session_put(&id(5), &session("mira", now, "b"), 600_000)
        .await
        .unwrap();
    // Expires almost at once.
    let mut short = session("mira", now, "c");
    short.last_seen_ms = now;
    s.session_put(&id(6), &short, 30).await.unwrap();
    s.session_delete(&id(4)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    let later = crate::core::clock::now_ms();
    let listed: Vec<_> = s
        .sessions_list("mira", later)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, vec![id(5)], "ended and expired sessions are listed");
    s.sessions_delete_others("mira", &id(5)).await.unwrap();
    assert_eq!(s.sessions_list("mira", later).await.unwrap().len(), 1);
    s.sessions_delete_user("mira").await.unwrap();
    assert!(s.sessions_list("mira", later).await.unwrap().is_empty());
}

async fn devices_are_listed_with_their_tokens(s: &dyn Store) {
    let now = crate::core::clock::now_ms();
    let dev = |user: &str| DeviceRecord {
        user: user.into(),
        created_ms: now,
        expires_ms: now + 600_000,
        label: "Firefox on Linux".into(),
        credential: [2; 8],
    };
    s.device_put(&[0x71; 32], &dev("ines")).await.unwrap();
    s.device_put(&[0x72; 32], &dev("ines")).await.unwrap();
    s.device_put(&[0x73; 32], &dev("jon")).await.unwrap();
    let mut tokens: Vec<_> = s
        .devices_entries("ines")
        .await
        .unwrap()
        .into_iter()
        .map(|(t, d)| {
            assert_eq!(d.user, "ines");
            t
        })
        .collect();
    tokens.sort();
    assert_eq!(tokens, vec![[0x71; 32], [0x72; 32]]);
    // A listed token revokes exactly that device, and only for its owner.
    assert!(s.device_take(&[0x73; 32], "ines").await.unwrap().is_none());
    assert!(s.device_take(&[0x71; 32], "ines").await.unwrap().is_some());
    assert_eq!(s.devices_entries("ines").await.unwrap().len(), 1);
    assert_eq!(s.devices_entries("jon").await.unwrap().len(), 1);
    s.devices_forget("ines").await.unwrap();
    s.devices_forget("jon").await.unwrap();
}
