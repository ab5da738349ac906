//! How the gateway reaches Redis: one connection type over the three topologies, and
//! for Sentinel a connection that asks again for the master after a failover.

use std::sync::{Arc, RwLock};

use redis::AsyncConnectionConfig;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A standalone server's connections for the hot path: one plain multiplexed
/// connection per thread. Each worker thread runs its own single-threaded runtime, and
/// a connection's driver task lives on the runtime that created it; sharing one
/// connection would cost two cross-thread wake-ups per call (the same reason as
/// `proxy::client::UpstreamPool`). No `ConnectionManager` here: its reconnect machinery
/// costs more per call than the lookup itself. A thread's connection is made in the
/// background on first use (calls meanwhile take the shared connection) and dropped
/// after an error, to be made again.
pub(super) struct PerThreadConnection {
    id: u64,
    client: redis::Client,
    config: AsyncConnectionConfig,
}

/// One thread's state for one store: its connection, or whether one is being made.
enum Slot {
    Connecting,
    Ready(MultiplexedConnection),
}

thread_local! {
    static CONNECTIONS: std::cell::RefCell<Vec<(u64, Slot)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl PerThreadConnection {
    pub(super) fn new(client: redis::Client, timeout: std::time::Duration) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // The caller bounds every call with its own timeout: no second timer per call.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            client,
            config,
        }
    }

    /// This thread's connection, if it has one ready; otherwise starts making one.
    pub(super) fn get(&self) -> Option<MultiplexedConnection> {
        let ready = CONNECTIONS.with(|all| {
            let all = all.borrow();
            match all.iter().find(|(id, _)| *id == self.id) {
                Some((_, Slot::Ready(c))) => Some(Some(c.clone())),
                Some((_, Slot::Connecting)) => Some(None),
                None => None,
            }
        });
        match ready {
            Some(c) => c,
            None => {
                self.connect_in_background();
                None
            }
        }
    }

    fn connect_in_background(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        set_slot(self.id, Some(Slot::Connecting));
        let (id, client, config) = (self.id, self.client.clone(), self.config.clone());
        rt.spawn(async move {
            match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(c) => set_slot(id, Some(Slot::Ready(c))),
                // Try again on a later call.
                Err(_) => set_slot(id, None),
            }
        });
    }

    /// Drops this thread's connection after an error, so that a later call makes a
    /// new one.
    pub(super) fn forget(&self) {
        set_slot(self.id, None);
    }
}

fn set_slot(id: u64, slot: Option<Slot>) {
    CONNECTIONS.with(|all| {
        let mut all = all.borrow_mut();
        all.retain(|(i, _)| *i != id);
        if let Some(slot) = slot {
            all.push((id, slot));
        }
    });
}

/// How the gateway reaches Redis.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    /// A worker thread's own connection (see [`PerThreadConnection`]).
    Thread(MultiplexedConnection),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

/// A connection to whichever server Sentinel names as master, re-resolved after errors
/// (a failover moves the master).
pub(super) struct SentinelConn {
    pub(super) client: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
    pub(super) current: RwLock<Option<ConnectionManager>>,
    pub(super) config: ConnectionManagerConfig,
}

impl SentinelConn {
    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(c) = self.current.read().ok().and_then(|c| c.clone()) {
            return Ok(c);
        }
        let client = self.client.lock().await.async_get_client().await?;
        let manager = ConnectionManager::new_with_config(client, self.config.clone()).await?;
        if let Ok(mut cur) = self.current.write() {
            *cur = Some(manager.clone());
        }
        Ok(manager)
    }

    fn forget(&self) {
        if let Ok(mut cur) = self.current.write() {
            *cur = None;
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Thread(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut c = s.connection().await?;
                let r = c.req_packed_command(cmd).await;
                if r.as_ref().is_err_and(|e| {
                    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
                }) || is_readonly(&r)
                {
                    s.forget();
                }
                r
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Thread(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut c = s.connection().await?;
                let r = c.req_packed_commands(pipeline, offset, count).await;
                if r.is_err() {
                    s.forget();
                }
                r
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Thread(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// A demoted master answers writes with READONLY: time to ask Sentinel again.
fn is_readonly(r: &redis::RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.code() == Some("READONLY"))
}
