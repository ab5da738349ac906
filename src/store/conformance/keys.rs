//! Security keys and WebAuthn ceremonies (SPEC §10): a credential id belongs to one
//! user, a signature counter moves by compare-and-set (one winner among concurrent
//! sign-ins, on any instance), the last second factor of a staff user cannot be
//! removed even by two removals at once, a 2FA reset removes keys, and a ceremony's
//! state is taken once.

use std::sync::Arc;

use crate::core::store::*;

fn key(user: &str, id: u8, created_ms: u64) -> KeyRecord {
    KeyRecord {
        id: vec![id, 0xAB, id],
        user: user.into(),
        name: format!("key {id}"),
        created_ms,
        last_used_ms: None,
        counter: 5,
        credential: "{\"public\":\"key\"}".into(),
    }
}

/// Runs every check of this file.
pub async fn run_all(store: Arc<dyn Store>) {
    keys_are_listed_found_and_unique(&*store).await;
    counters_move_by_compare_and_set(store.clone()).await;
    the_last_factor_stays_even_under_concurrent_removal(store.clone()).await;
    rename_and_reset(&*store).await;
    ceremonies_are_taken_once(store.clone()).await;
}

async fn keys_are_listed_found_and_unique(s: &dyn Store) {
    assert!(s.keys_list("kira").await.unwrap().is_empty());
    assert!(s.key_add(&key("kira", 2, 200)).await.unwrap());
    assert!(s.key_add(&key("kira", 1, 100)).await.unwrap());
    assert!(
        !s.key_add(&key("kira", 1, 300)).await.unwrap(),
        "the same credential id twice"
    );
    assert!(
        !s.key_add(&key("lev", 1, 300)).await.unwrap(),
        "a credential id registered to another user"
    );
    let list = s.keys_list("kira").await.unwrap();
    assert_eq!(
        list,
        vec![key("kira", 1, 100), key("kira", 2, 200)],
        "oldest first"
    );
    assert!(s.keys_list("lev").await.unwrap().is_empty());
    assert_eq!(
        s.key_find(&key("kira", 2, 0).id).await.unwrap(),
        Some(key("kira", 2, 200))
    );
    assert_eq!(s.key_find(&[9, 9, 9]).await.unwrap(), None);
}

async fn counters_move_by_compare_and_set(s: Arc<dyn Store>) {
    let k = key("mona", 3, 1);
    assert!(s.key_add(&k).await.unwrap());
    assert!(
        !s.key_use("mona", &k.id, 4, 6, 50).await.unwrap(),
        "stale counter: refused"
    );
    assert!(
        !s.key_use("nils", &k.id, 5, 6, 50).await.unwrap(),
        "another user's key"
    );
    // Sixteen sign-ins that all saw counter 5: exactly one wins.
    let wins = futures_all((0..16u32).map(|i| {
        let s = s.clone();
        let id = k.id.clone();
        async move { s.key_use("mona", &id, 5, 6 + i, 60).await.unwrap() }
    }))
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1);
    let got = s.key_find(&k.id).await.unwrap().unwrap();
    assert!(got.counter >= 6);
    assert_eq!(got.last_used_ms, Some(60));
    assert_eq!(got.name, k.name);
}

async fn the_last_factor_stays_even_under_concurrent_removal(s: Arc<dyn Store>) {
    let (a, b) = (key("otto", 4, 1), key("otto", 5, 2));
    assert!(s.key_add(&a).await.unwrap());
    assert!(s.key_add(&b).await.unwrap());
    assert_eq!(
        s.key_remove("otto", &[1, 2, 3], true).await.unwrap(),
        KeyRemoval::NotFound
    );
    assert_eq!(
        s.key_remove("pia", &a.id, true).await.unwrap(),
        KeyRemoval::NotFound,
        "only the owner removes a key"
    );
    // Both keys removed at once by a staff user: one goes, the last stays.
    let (ra, rb) = tokio::join!(
        s.key_remove("otto", &a.id, true),
        s.key_remove("otto", &b.id, true)
    );
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| *o == KeyRemoval::Removed);
    assert_eq!(outcomes, [KeyRemoval::LastFactor, KeyRemoval::Removed]);
    assert_eq!(s.keys_list("otto").await.unwrap().len(), 1);
    // With TOTP on, the last key may go.
    let mfa = MfaRecord {
        secret: vec![1],
        enabled_ms: 1,
        last_used_ms: None,
    };
    assert!(s.mfa_enable("otto", &mfa, &[]).await.unwrap());
    let left = s.keys_list("otto").await.unwrap().remove(0);
    assert_eq!(
        s.key_remove("otto", &left.id, true).await.unwrap(),
        KeyRemoval::Removed
    );
    assert!(s.key_find(&left.id).await.unwrap().is_none());
    // A removed id can be registered again.
    assert!(s.key_add(&left).await.unwrap());
    // Without the requirement (a patient), the last key goes too.
    s.mfa_remove("otto").await.unwrap();
    assert!(s.key_add(&left).await.unwrap());
    assert_eq!(
        s.key_remove("otto", &left.id, false).await.unwrap(),
        KeyRemoval::Removed
    );
}

async fn rename_and_reset(s: &dyn Store) {
    let k = key("quin", 6, 1);
    assert!(s.key_add(&k).await.unwrap());
    assert!(s.key_use("quin", &k.id, 5, 9, 70).await.unwrap());
    assert!(s.key_rename("quin", &k.id, "blue key").await.unwrap());
    assert!(!s.key_rename("quin", &[7, 7], "x").await.unwrap());
    assert!(!s.key_rename("rita", &k.id, "x").await.unwrap());
    let got = s.keys_list("quin").await.unwrap().remove(0);
    assert_eq!(
        (got.name.as_str(), got.counter, got.last_used_ms),
        ("blue key", 9, Some(70)),
        "a rename keeps the counter"
    );
    s.mfa_remove("quin").await.unwrap();
    assert!(
        s.keys_list("quin").await.unwrap().is_empty(),
        "a reset removes keys"
    );
    assert!(s.key_find(&k.id).await.unwrap().is_none());
}

async fn ceremonies_are_taken_once(s: Arc<dyn Store>) {
    let now = crate::core::clock::now_ms();
    let h = [42u8; 32];
    s.ceremony_put(&h, b"state", now + 60_000).await.unwrap();
    let takes = futures_all((0..8).map(|_| {
        let s = s.clone();
        async move { s.ceremony_take(&h, now).await.unwrap() }
    }))
    .await;
    assert_eq!(
        takes.iter().flatten().collect::<Vec<_>>(),
        vec![&b"state".to_vec()],
        "one taker"
    );
    assert_eq!(s.ceremony_take(&[43; 32], now).await.unwrap(), None);
    // An expired state is not handed out.
    s.ceremony_put(&[44; 32], b"old", now + 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        s.ceremony_take(&[44; 32], crate::core::clock::now_ms())
            .await
            .unwrap(),
        None
    );
}

/// Runs futures concurrently on the runtime and collects their outputs.
async fn futures_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
