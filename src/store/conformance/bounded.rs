//! Backend-specific checks that what clients can make the store keep is bounded:
//! failure records of invented usernames and the per-user session index do not grow
//! without end (SPEC §6 lockout, §7).

use std::sync::Arc;

use crate::core::auth_flow::Stage;
use crate::core::lockout::{LockPolicy, Step};
use crate::core::store::{SessionRecord, Store};

use super::RedisServer;

const P: LockPolicy = LockPolicy {
    max_failures: 5,
    duration_ms: 60_000,
    max_duration_ms: 3_600_000,
    code_max_failures: 100,
};

/// A 64-character username nobody has.
fn invented(n: usize) -> String {
    format!("{n:0>64}")
}

/// Invented names fill no disk: the purge removes their records after the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_purge_drops_password_records_after_the_lock_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let now = crate::core::clock::now_ms();
    for n in 0..200 {
        for _ in 0..6 {
            store
                .lock_reserve(&invented(n), Step::Password, now, &P)
                .await
                .unwrap();
        }
    }
    store
        .lock_reserve("known", Step::Code, now, &P)
        .await
        .unwrap();
    let rows = |store: &crate::store::embedded::EmbeddedStore| {
        rusqlite::Connection::open(store.file())
            .unwrap()
            .query_row("SELECT COUNT(*) FROM lockouts", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(rows(&store), 201);
    // Within the window (locked records: max_duration after their lock ends) they stay.
    store
        .purge_expired(now + P.max_duration_ms + P.duration_ms - 1)
        .await
        .unwrap();
    assert_eq!(rows(&store), 201, "still inside the lock window");
    store
        .purge_expired(now + P.max_duration_ms + P.duration_ms)
        .await
        .unwrap();
    assert_eq!(
        rows(&store),
        1,
        "only the code-step record (never reset by time) is left"
    );
}

/// A plain connection, to look at keys the way an operator would.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.storage_config().redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Keys matching `pattern`.
async fn keys(c: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(c)
        .await
        .unwrap()
}

/// Milliseconds `key` has left (-1: no expiry).
async fn pttl(c: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(c).await.unwrap()
}

/// Invented names fill no memory: every password-step key carries a bounded TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_records_expire_within_the_lock_window() {
    let server = RedisServer::start();
    let store = crate::store::redis::RedisStore::open(&server.storage_config())
        .await
        .unwrap();
    let now = crate::core::clock::now_ms();
    for n in 0..100 {
        for _ in 0..(n % 7) + 1 {
            store
                .lock_reserve(&invented(n), Step::Password, now, &P)
                .await
                .unwrap();
        }
    }
    store
        .lock_reserve("known", Step::Code, now, &P)
        .await
        .unwrap();
    let mut c = raw(&server).await;
    let found = keys(&mut c, "test:l:*").await;
    assert_eq!(found.len(), 101);
    for k in &found {
        let ttl = pttl(&mut c, k).await;
        if k.ends_with(":code") {
            assert_eq!(ttl, -1, "code-step records are never reset by time");
        } else {
            assert!(
                ttl > 0 && ttl as u64 <= P.max_duration_ms + P.duration_ms,
                "{k}: time to live {ttl} ms, beyond max_duration after the lock"
            );
        }
    }
}

/// A user's session index lists live sessions only, and expires with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_session_index_drops_expired_and_ended_sessions() {
    let server = RedisServer::start();
    let mut store = crate::store::redis::RedisStore::open(&server.storage_config())
        .await
        .unwrap();
    store.set_index_grace_ms(0);
    let store: Arc<dyn Store> = Arc::new(store);
    let now = crate::core::clock::now_ms();
    let rec = SessionRecord {
        user: "gus".into(),
        stage: Stage::PasswordDone,
        created_ms: now,
        last_seen_ms: now,
        credential: [1; 8],
        meta: Default::default(),
    };
    for n in 0..20u8 {
        store.session_put(&[n; 32], &rec, 50).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    store.session_put(&[100; 32], &rec, 600_000).await.unwrap();
    store.session_put(&[101; 32], &rec, 600_000).await.unwrap();
    store.session_delete(&[101; 32]).await.unwrap();
    let mut c = raw(&server).await;
    // Whatever the index is called and whichever type it has: it lists the one live
    // session only, and it expires by itself.
    let index = keys(&mut c, "test:{u:gus}:*").await;
    assert!(!index.is_empty(), "the user's sessions are indexed");
    let mut listed = 0;
    for k in &index {
        let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut c).await.unwrap();
        let n: i64 = match kind.as_str() {
            "zset" => redis::cmd("ZCARD")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap(),
            "set" => redis::cmd("SCARD")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap(),
            other => panic!("{k}: unexpected type {other}"),
        };
        listed += n;
        let ttl = pttl(&mut c, k).await;
        assert!(ttl > 0, "{k} must expire with its last session, has {ttl}");
    }
    assert_eq!(listed, 1, "expired and ended sessions leave the index");
    assert_eq!(store.sessions_delete_user("gus").await.unwrap(), 1);
}

/// A database written before lockout records carried an expiry is migrated on open:
/// its password-step rows get the expiry they had (7 days after their last change),
/// code-step rows none, and opening it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_lockouts_of_an_earlier_version_gain_an_expiry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let old = rusqlite::Connection::open(dir.path().join("vestibule.sqlite3")).unwrap();
        old.execute_batch(
            "CREATE TABLE lockouts(key TEXT NOT NULL, step TEXT NOT NULL, data TEXT NOT NULL,
               updated_ms INTEGER NOT NULL, PRIMARY KEY(key, step)) WITHOUT ROWID;
             INSERT INTO lockouts VALUES('old', 'password', '{\"failures\":3,\"locks\":0,\"locked_until_ms\":0,\"blocked\":false}', 1000);
             INSERT INTO lockouts VALUES('old', 'code', '{\"failures\":3,\"locks\":0,\"locked_until_ms\":0,\"blocked\":false}', 1000);",
        )
        .unwrap();
    }
    for _ in 0..2 {
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        let db = rusqlite::Connection::open(store.file()).unwrap();
        let expiry = |step: &str| -> i64 {
            db.query_row(
                "SELECT expires_ms FROM lockouts WHERE key='old' AND step=?1",
                [step],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(expiry("password"), 1000 + 7 * 24 * 3600 * 1000);
        assert_eq!(expiry("code"), 0);
    }
    let store = crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let at = 2000;
    let (code, _) = match store.lock_reserve("old", Step::Code, at, &P).await.unwrap() {
        crate::core::lockout::Reservation::Granted {
            record,
            imposed_lock,
        } => (record, imposed_lock),
        other => panic!("{other:?}"),
    };
    assert_eq!(code.failures, 4, "the old count carries on");
}
