//! A local cache of session records for a standalone Redis, kept true by Redis itself
//! (issue 26): one connection per gateway process asks for `CLIENT TRACKING ON BCAST
//! PREFIX <prefix>s:` over RESP3, so every write, delete or expiry of a session key —
//! by any instance, the admin commands, or Redis's own TTL — pushes an `invalidate`
//! to this process, which drops the entry before anything else happens on that
//! connection (the push is handled inline, by the connection's reader).
//!
//! A cached record is used only while the invalidation channel is proven current: a
//! `PING` goes down the tracking connection every [`PING_EVERY`], and since Redis
//! answers in order, its reply proves that every invalidation for a write before the
//! `PING` was sent has been applied. An entry is served only when such a proof is at
//! most [`FRESH_FOR`] old; otherwise (channel down, reconnecting, Redis slow) the
//! cache is emptied and bypassed, and every lookup goes to Redis as before. A
//! revoke on any instance is thus refused everywhere within about 100 ms.
//!
//! A record read from Redis is cached only if no invalidation happened while it was
//! being read (the generation check), so a read racing a revoke cannot put the revoked
//! session back. Only sessions are cached: everything else is read when needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};

use crate::core::fast_map::FastMap;
use crate::core::store::{Fingerprint, SessionRecord};

/// How often the tracking connection proves itself current.
const PING_EVERY: Duration = Duration::from_millis(20);
/// The oldest proof under which cached entries are still served.
const FRESH_FOR: Duration = Duration::from_millis(80);
/// How long a proof may take before the channel counts as down.
const PING_TIMEOUT: Duration = Duration::from_millis(250);
/// Past this many entries the cache starts over (about 150 bytes an entry).
const CAPACITY: usize = 65_536;

struct State {
    entries: FastMap<Fingerprint, SessionRecord>,
    /// Raised by every invalidation; a read begun under an older one is not cached.
    generation: u64,
}

/// The cache and the proof of its currency.
pub(super) struct SessionTracking {
    state: RwLock<State>,
    /// Milliseconds after `epoch` at which the last proving `PING` was sent; 0: none.
    proven_at: AtomicU64,
    epoch: Instant,
    /// `<prefix>s:`, the tracked key prefix.
    key_prefix: String,
}

impl SessionTracking {
    /// Starts tracking for the server `client` reaches (made RESP3 here); the cache
    /// is bypassed until the first proof.
    pub(super) fn start(client: &redis::Client, prefix: &str) -> Option<Arc<Self>> {
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3)).ok()?;
        let me = Arc::new(Self {
            state: RwLock::new(State {
                entries: FastMap::default(),
                generation: 0,
            }),
            proven_at: AtomicU64::new(0),
            epoch: Instant::now(),
            key_prefix: format!("{prefix}s:"),
        });
        tokio::spawn(me.clone().run(client));
        Some(me)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether the entries are proven current now.
    fn fresh(&self) -> bool {
        let proven = self.proven_at.load(Ordering::Acquire);
        proven != 0 && self.now_ms().saturating_sub(proven) <= FRESH_FOR.as_millis() as u64
    }

    /// The cached record of `id`, when there is one and the cache is current.
    pub(super) fn get(&self, id: &Fingerprint) -> Option<SessionRecord> {
        if !self.fresh() {
            return None;
        }
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.entries.get(id).cloned()
    }

    /// Taken before a read from Redis; see [`SessionTracking::insert`].
    pub(super) fn ticket(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// Caches what a read begun at `ticket` returned, unless anything was
    /// invalidated since or the cache is not current.
    pub(super) fn insert(&self, id: &Fingerprint, rec: &SessionRecord, ticket: u64) {
        if !self.fresh() {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.generation != ticket {
            return;
        }
        if state.entries.len() >= CAPACITY {
            state.entries.clear();
        }
        state.entries.insert(*id, rec.clone());
    }

    /// Drops `id` before this process changes or deletes it (its own invalidation
    /// arrives too, but a read in between must not see the old record).
    pub(super) fn forget(&self, id: &Fingerprint) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.entries.remove(id);
        state.generation += 1;
    }

    /// Drops every entry.
    pub(super) fn forget_all(&self) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.entries.clear();
        state.generation += 1;
    }

    /// Applies one push, inline on the tracking connection's reader.
    fn on_push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                    state.generation += 1;
                    for key in keys {
                        if let Some(id) = self.id_of(key) {
                            state.entries.remove(&id);
                        }
                    }
                }
                // A flush (or a form not understood): everything may have changed.
                _ => self.forget_all(),
            },
            PushKind::Disconnection => {
                self.proven_at.store(0, Ordering::Release);
                self.forget_all();
            }
            _ => {}
        }
    }

    /// The session id a tracked key names.
    fn id_of(&self, key: &Value) -> Option<Fingerprint> {
        let raw = match key {
            Value::BulkString(b) => b.as_slice(),
            Value::SimpleString(s) => s.as_bytes(),
            _ => return None,
        };
        let hex = raw.strip_prefix(self.key_prefix.as_bytes())?;
        let bytes = data_encoding::HEXLOWER.decode(hex).ok()?;
        bytes.try_into().ok()
    }

    /// Keeps a tracking connection up and proving itself, for the life of the process.
    async fn run(self: Arc<Self>, client: redis::Client) {
        loop {
            self.proven_at.store(0, Ordering::Release);
            self.forget_all();
            let me = self.clone();
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(PING_TIMEOUT))
                .set_push_sender(move |info: PushInfo| {
                    me.on_push(info);
                    Ok::<(), redis::aio::SendError>(())
                });
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await;
            if let Ok(mut conn) = conn {
                let tracking: redis::RedisResult<()> = redis::cmd("CLIENT")
                    .arg("TRACKING")
                    .arg("ON")
                    .arg("BCAST")
                    .arg("PREFIX")
                    .arg(&self.key_prefix)
                    .query_async(&mut conn)
                    .await;
                match tracking {
                    Ok(()) => self.prove(&mut conn).await,
                    Err(e) => tracing::warn!(
                        error = %e,
                        "Redis refused CLIENT TRACKING; sessions are read from Redis on every request"
                    ),
                }
            }
            self.proven_at.store(0, Ordering::Release);
            self.forget_all();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Proves the channel current every [`PING_EVERY`] until a proof fails.
    async fn prove(&self, conn: &mut redis::aio::MultiplexedConnection) {
        loop {
            let sent = self.now_ms();
            let pong: redis::RedisResult<String> =
                tokio::time::timeout(PING_TIMEOUT, redis::cmd("PING").query_async(conn))
                    .await
                    .unwrap_or_else(|_| {
                        Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "ping timed out",
                        )))
                    });
            if pong.is_err() {
                return;
            }
            self.proven_at.store(sent, Ordering::Release);
            tokio::time::sleep(PING_EVERY).await;
        }
    }
}
