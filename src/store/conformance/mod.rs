//! The storage conformance suite: every backend must pass these, unchanged. Each
//! check names the property of SPEC §6/§7 it protects. Clocks are passed in, never
//! slept on.

mod bounded;
mod keys;
mod listing;
mod lockout;
mod sessions;

use std::sync::Arc;

use crate::core::auth_flow::{SecondFactor, Stage};
use crate::core::store::*;

fn session(user: &str, now: u64) -> SessionRecord {
    SessionRecord {
        user: user.into(),
        stage: Stage::PasswordDone,
        created_ms: now,
        last_seen_ms: now,
        credential: [1; 8],
        meta: Default::default(),
    }
}

fn device(user: &str, now: u64) -> DeviceRecord {
    DeviceRecord {
        user: user.into(),
        created_ms: now,
        expires_ms: crate::core::clock::now_ms() + 600_000,
        label: "Firefox on Linux".into(),
        credential: [2; 8],
    }
}

/// Runs every check against `store`.
pub async fn run_all(store: Arc<dyn Store>) {
    sessions_round_trip_and_end(&*store).await;
    sessions_of_one_user_end_together(&*store).await;
    other_sessions_of_one_user_end_and_the_kept_one_stays_revocable(&*store).await;
    enrollment_is_pending_until_enabled(&*store).await;
    time_steps_are_accepted_once_and_only_going_up(&*store).await;
    backup_codes_work_once_even_concurrently(store.clone()).await;
    devices_are_taken_once_and_only_by_their_user(&*store).await;
    lockout::run_all(store.clone()).await;
    sessions::run_all(store.clone()).await;
    listing::run_all(&*store).await;
    purge_drops_expired_records(&*store).await;
    secrets_can_be_listed_and_swapped_for_rotation(&*store).await;
    keys::run_all(store.clone()).await;
}

async fn secrets_can_be_listed_and_swapped_for_rotation(s: &dyn Store) {
    s.pending_put(
        "rosa",
        &PendingEnrollment {
            secret: vec![1, 1],
            created_ms: 1,
        },
    )
    .await
    .unwrap();
    let rec = MfaRecord {
        secret: vec![2, 2],
        enabled_ms: 1,
        last_used_ms: None,
    };
    assert!(s.mfa_enable("sam", &rec, &[]).await.unwrap());
    let all = s.secrets_list().await.unwrap();
    assert!(all.contains(&StoredSecret {
        user: "rosa".into(),
        kind: SecretKind::Pending,
        envelope: vec![1, 1]
    }));
    assert!(all.contains(&StoredSecret {
        user: "sam".into(),
        kind: SecretKind::Active,
        envelope: vec![2, 2]
    }));
    assert!(
        !s.secret_swap("sam", SecretKind::Active, &[9, 9], &[3, 3])
            .await
            .unwrap(),
        "stale old value: no swap"
    );
    assert!(
        s.secret_swap("sam", SecretKind::Active, &[2, 2], &[3, 3])
            .await
            .unwrap()
    );
    assert_eq!(s.mfa_get("sam").await.unwrap().unwrap().secret, vec![3, 3]);
    assert!(
        s.secret_swap("rosa", SecretKind::Pending, &[1, 1], &[4, 4])
            .await
            .unwrap()
    );
    assert_eq!(
        s.pending_get("rosa").await.unwrap().unwrap().secret,
        vec![4, 4]
    );
}

async fn sessions_round_trip_and_end(s: &dyn Store) {
    let id = [7u8; 32];
    s.session_put(&id, &session("alice", 1000), 60_000)
        .await
        .unwrap();
    let got = s.session_get(&id).await.unwrap().unwrap();
    assert_eq!(got, session("alice", 1000));
    s.session_touch(&id, 5000, 60_000).await.unwrap();
    assert_eq!(
        s.session_get(&id).await.unwrap().unwrap().last_seen_ms,
        5000
    );
    let complete = SessionRecord {
        stage: Stage::Complete {
            factor: Some(SecondFactor::Totp),
        },
        ..session("alice", 1000)
    };
    s.session_put(&id, &complete, 60_000).await.unwrap();
    assert_eq!(
        s.session_get(&id).await.unwrap().unwrap().stage,
        complete.stage
    );
    s.session_delete(&id).await.unwrap();
    assert!(s.session_get(&id).await.unwrap().is_none());
}

async fn sessions_of_one_user_end_together(s: &dyn Store) {
    for i in 0..3u8 {
        s.session_put(&[i + 100; 32], &session("bob", 1), 60_000)
            .await
            .unwrap();
    }
    s.session_put(&[200; 32], &session("carol", 1), 60_000)
        .await
        .unwrap();
    assert_eq!(s.sessions_delete_user("bob").await.unwrap(), 3);
    assert!(s.session_get(&[100; 32]).await.unwrap().is_none());
    assert!(s.session_get(&[200; 32]).await.unwrap().is_some());
}

async fn other_sessions_of_one_user_end_and_the_kept_one_stays_revocable(s: &dyn Store) {
    for i in 0..3u8 {
        s.session_put(&[i + 110; 32], &session("erin", 1), 60_000)
            .await
            .unwrap();
    }
    s.session_put(&[210; 32], &session("frank", 1), 60_000)
        .await
        .unwrap();
    assert_eq!(
        s.sessions_delete_others("erin", &[111; 32]).await.unwrap(),
        2
    );
    assert!(s.session_get(&[110; 32]).await.unwrap().is_none());
    assert!(s.session_get(&[112; 32]).await.unwrap().is_none());
    assert!(
        s.session_get(&[111; 32]).await.unwrap().is_some(),
        "the kept session"
    );
    assert!(
        s.session_get(&[210; 32]).await.unwrap().is_some(),
        "another user's"
    );
    // The kept session is still known to a later revoke.
    assert_eq!(s.sessions_delete_user("erin").await.unwrap(), 1);
    assert!(s.session_get(&[111; 32]).await.unwrap().is_none());
}

async fn enrollment_is_pending_until_enabled(s: &dyn Store) {
    let user = "dana";
    assert!(s.mfa_get(user).await.unwrap().is_none());
    let p = PendingEnrollment {
        secret: vec![1, 2, 3],
        created_ms: 10,
    };
    s.pending_put(user, &p).await.unwrap();
    assert_eq!(s.pending_get(user).await.unwrap(), Some(p.clone()));
    let rec = MfaRecord {
        secret: vec![1, 2, 3],
        enabled_ms: 20,
        last_used_ms: None,
    };
    assert!(s.mfa_enable(user, &rec, &[[9; 32]]).await.unwrap());
    assert!(
        s.pending_get(user).await.unwrap().is_none(),
        "enabling removes the pending secret"
    );
    assert!(
        !s.mfa_enable(user, &rec, &[]).await.unwrap(),
        "an enabled secret is never replaced"
    );
    assert_eq!(s.backup_count(user).await.unwrap(), 1);
    s.mfa_mark_used(user, 30).await.unwrap();
    assert_eq!(
        s.mfa_get(user).await.unwrap().unwrap().last_used_ms,
        Some(30)
    );
    s.device_put(&[5; 32], &device(user, 0)).await.unwrap();
    s.mfa_remove(user).await.unwrap();
    assert!(s.mfa_get(user).await.unwrap().is_none());
    assert_eq!(s.backup_count(user).await.unwrap(), 0);
    assert!(
        s.devices_list(user).await.unwrap().is_empty(),
        "a reset voids remembered devices"
    );
}

async fn time_steps_are_accepted_once_and_only_going_up(s: &dyn Store) {
    assert!(s.step_accept("erin", 100).await.unwrap());
    assert!(!s.step_accept("erin", 100).await.unwrap(), "replay refused");
    assert!(
        !s.step_accept("erin", 99).await.unwrap(),
        "older step refused"
    );
    assert!(s.step_accept("erin", 101).await.unwrap());
    assert!(
        s.step_accept("frank", 100).await.unwrap(),
        "marks are per user"
    );
}

async fn backup_codes_work_once_even_concurrently(s: Arc<dyn Store>) {
    let user = "gina";
    let codes: Vec<Fingerprint> = (0..5u8).map(|i| [i; 32]).collect();
    s.backup_replace(user, &codes).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.backup_consume("gina", &[3; 32]).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            wins += 1;
        }
    }
    assert_eq!(
        wins, 1,
        "one backup code, twenty concurrent uses: exactly one wins"
    );
    assert_eq!(s.backup_consume(user, &[0; 32]).await.unwrap(), Some(3));
    s.backup_replace(user, &[[42; 32]]).await.unwrap();
    assert_eq!(
        s.backup_consume(user, &[1; 32]).await.unwrap(),
        None,
        "regenerating voids the old set"
    );
    assert_eq!(s.backup_count(user).await.unwrap(), 1);
}

async fn devices_are_taken_once_and_only_by_their_user(s: &dyn Store) {
    let token = [77u8; 32];
    s.device_put(&token, &device("hank", 0)).await.unwrap();
    assert!(
        s.device_take(&token, "ivy").await.unwrap().is_none(),
        "another user cannot use it"
    );
    assert_eq!(
        s.devices_list("hank").await.unwrap().len(),
        1,
        "and it stays for its owner"
    );
    assert!(s.device_take(&token, "hank").await.unwrap().is_some());
    assert!(
        s.device_take(&token, "hank").await.unwrap().is_none(),
        "a token is used once"
    );
    s.device_put(&[78; 32], &device("hank", 0)).await.unwrap();
    s.device_put(&[79; 32], &device("hank", 0)).await.unwrap();
    assert_eq!(s.devices_forget("hank").await.unwrap(), 2);
    assert!(s.devices_list("hank").await.unwrap().is_empty());
}

async fn purge_drops_expired_records(s: &dyn Store) {
    // Backends may expire by wall clock (Redis TTLs), so this check uses real time.
    let now = crate::core::clock::now_ms();
    s.session_put(&[150; 32], &session("kim", now), 50)
        .await
        .unwrap();
    s.session_put(&[151; 32], &session("kim", now), 600_000)
        .await
        .unwrap();
    s.device_put(
        &[152; 32],
        &DeviceRecord {
            expires_ms: now + 50,
            ..device("kim", now)
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    s.purge_expired(crate::core::clock::now_ms()).await.unwrap();
    assert!(s.session_get(&[150; 32]).await.unwrap().is_none());
    assert!(s.session_get(&[151; 32]).await.unwrap().is_some());
    assert!(s.devices_list("kim").await.unwrap().is_empty());
    assert!(s.ping().await.is_ok());
    assert!(s.sessions_count().await.unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::embedded::EmbeddedStore::open(dir.path()).unwrap();
    run_all(Arc::new(store)).await;
}

/// A database made before sessions carried their metadata keeps its sessions: the
/// migration adds the column, and old rows read with empty metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sessions_of_an_earlier_version_survive_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("vestibule.sqlite3")).unwrap();
        c.execute_batch(
            "CREATE TABLE sessions(id BLOB PRIMARY KEY, user TEXT NOT NULL, stage TEXT NOT NULL,
               created_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, credential BLOB NOT NULL,
               expires_ms INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        c.execute(
            "INSERT INTO sessions VALUES(?1,'lee','\"password_done\"',1,2,?2,?3)",
            rusqlite::params![&[7u8; 32][..], &[1u8; 8][..], i64::MAX],
        )
        .unwrap();
    }
    let store = super::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let got = store.session_get(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(got.user, "lee");
    assert_eq!(got.meta, SessionMeta::default());
    assert_eq!(store.sessions_list("lee", 3).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = super::embedded::EmbeddedStore::open(dir.path()).unwrap();
        store
            .session_put(&[1; 32], &session("lee", 1), 60_000)
            .await
            .unwrap();
    }
    let store = super::embedded::EmbeddedStore::open(dir.path()).unwrap();
    assert!(store.session_get(&[1; 32]).await.unwrap().is_some());
}

/// The serving process caches sessions; an admin command is another process with its
/// own handle. What that handle ends must be gone for the first at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sessions_ended_by_another_process_are_gone_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let serving = super::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let admin = super::embedded::EmbeddedStore::open(dir.path()).unwrap();
    for (id, user) in [(1u8, "lee"), (2, "lee"), (3, "kim"), (4, "kim")] {
        serving
            .session_put(&[id; 32], &session(user, 1), 60_000)
            .await
            .unwrap();
        // Twice: the second answer comes from the cache.
        assert!(serving.session_get(&[id; 32]).await.unwrap().is_some());
        assert!(serving.session_get(&[id; 32]).await.unwrap().is_some());
    }
    admin.session_delete(&[1; 32]).await.unwrap();
    assert!(serving.session_get(&[1; 32]).await.unwrap().is_none());
    assert!(serving.session_get(&[2; 32]).await.unwrap().is_some());
    assert_eq!(admin.sessions_delete_user("kim").await.unwrap(), 2);
    assert!(serving.session_get(&[3; 32]).await.unwrap().is_none());
    assert!(serving.session_get(&[4; 32]).await.unwrap().is_none());
    assert!(serving.session_get(&[2; 32]).await.unwrap().is_some());
}

/// A `redis-server` without persistence on `port`, working in `dir`.
fn spawn_redis(port: u16, dir: &std::path::Path) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test.sh installs it)")
}

/// A throwaway `redis-server` on a free loopback port, stopped on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Starts redis-server (installed by the test command) and waits until it answers.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn_redis(port, dir.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RedisServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn storage_config(&self) -> crate::config::StorageConfig {
        crate::config::StorageConfig {
            backend: crate::config::Backend::Redis,
            path: "unused".into(),
            redis_url: format!("redis://127.0.0.1:{}/0", self.port),
            redis_mode: crate::config::RedisMode::Standalone,
            redis_nodes: vec![],
            redis_sentinel_master: "mymaster".into(),
            redis_ca_file: None,
            key_prefix: "test:".into(),
            encryption_key_file: None,
            timeout: std::time::Duration::from_secs(2),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_conforms() {
    let server = RedisServer::start();
    let store = super::redis::RedisStore::open(&server.storage_config())
        .await
        .unwrap();
    run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_fails_closed_and_recovers_alone() {
    let mut server = RedisServer::start();
    let cfg = server.storage_config();
    let store = super::redis::RedisStore::open(&cfg).await.unwrap();
    store
        .session_put(
            &[1; 32],
            &session("lee", crate::core::clock::now_ms()),
            60_000,
        )
        .await
        .unwrap();
    let _ = server.child.kill();
    let _ = server.child.wait();
    let started = std::time::Instant::now();
    assert!(
        store.session_get(&[1; 32]).await.is_err(),
        "no Redis: an error, never a guess"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bounded by storage.timeout"
    );
    // Bring Redis back on the same port: the store reconnects without being rebuilt.
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_redis(server.port, dir.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if store.ping().await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "store did not recover after Redis came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
