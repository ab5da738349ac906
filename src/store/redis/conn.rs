//! How the gateway reaches Redis: one connection type over the three topologies, and
//! for Sentinel a connection that asks again for the master after a failover.

use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A standalone server's connections: one per thread, built lazily. Each worker thread
/// runs its own single-threaded runtime, and a connection's driver task lives on the
/// runtime that first uses it; sharing one connection would cost two cross-thread
/// wake-ups per call (the same reason as `proxy::client::UpstreamPool`).
pub(super) struct PerThreadManager {
    id: u64,
    client: redis::Client,
    config: ConnectionManagerConfig,
}

thread_local! {
    static MANAGERS: std::cell::RefCell<Vec<(u64, ConnectionManager)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl PerThreadManager {
    pub(super) fn new(client: redis::Client, config: ConnectionManagerConfig) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            client,
            config,
        }
    }

    /// This thread's connection (it connects on first use and reconnects by itself).
    pub(super) fn get(&self) -> redis::RedisResult<ConnectionManager> {
        MANAGERS.with(|managers| {
            if let Some((_, m)) = managers.borrow().iter().find(|(id, _)| *id == self.id) {
                return Ok(m.clone());
            }
            let m =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())?;
            managers.borrow_mut().push((self.id, m.clone()));
            Ok(m)
        })
    }

    /// Drops this thread's connection after an error, so that the next call connects
    /// afresh instead of waiting for a reconnect that only an error would trigger.
    pub(super) fn forget(&self) {
        MANAGERS.with(|managers| managers.borrow_mut().retain(|(id, _)| *id != self.id));
    }
}

/// How the gateway reaches Redis.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
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
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// A demoted master answers writes with READONLY: time to ask Sentinel again.
fn is_readonly(r: &redis::RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.code() == Some("READONLY"))
}
