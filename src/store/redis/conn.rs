//! How the gateway reaches Redis: one connection type over the three topologies, and
//! for Sentinel a connection that asks again for the master after a failover.

use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

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
