//! A local cluster in this process, for `chorus demo` and `chorus bench --local`: real nodes
//! on loopback (QUIC, mutual TLS with the development key), the others joining the first.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus::client::Client;
use chorus::{NodeHandle, NodeOptions, RedisOptions};
use chorus_proto::MemberState;

/// How often a forming cluster's membership is polled.
const FORM_POLL: Duration = Duration::from_millis(20);

/// Nodes started in this process, and a client of each.
pub struct LocalCluster {
    /// The nodes, in start order; the first is everyone's seed.
    pub nodes: Vec<NodeHandle>,
    /// One client per node, in the same order.
    pub clients: Vec<Client>,
}

impl LocalCluster {
    /// Starts `count` nodes named `<prefix>1`, `<prefix>2`..., the first also serving Redis on
    /// a free loopback port when `redis` is set, and returns once every node sees every other
    /// alive (so the eager-push trees span the whole cluster), or an error after `timeout` for
    /// any one step.
    pub async fn start(
        count: usize,
        prefix: &str,
        timeout: Duration,
        redis: bool,
    ) -> Result<Self, String> {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut nodes: Vec<NodeHandle> = Vec::new();
        for index in 0..count {
            let mut options = NodeOptions::new(listen, Vec::new());
            options.name = Some(format!("{prefix}{}", index + 1));
            match nodes.first() {
                Some(first) => options.join = vec![first.addr().to_string()],
                None if redis => options.redis = Some(RedisOptions { listen, password: None }),
                None => {}
            }
            let mut node = NodeHandle::start(options).await.map_err(|e| super::chain(&e))?;
            tokio::time::timeout(timeout, node.ready())
                .await
                .map_err(|_| format!("node {} did not join within {timeout:?}", index + 1))?;
            nodes.push(node);
        }
        let mut clients = Vec::new();
        for node in &nodes {
            let client = Client::connect(&node.addr().to_string(), &[]).await;
            clients.push(client.map_err(|e| super::chain(&e))?);
        }
        let cluster = LocalCluster { nodes, clients };
        cluster.formed(count, timeout).await?;
        Ok(cluster)
    }

    async fn formed(&self, count: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        'poll: while Instant::now() < deadline {
            tokio::time::sleep(FORM_POLL).await;
            for client in &self.clients {
                let members = client.members().await.map_err(|e| e.to_string())?;
                if members.iter().filter(|m| m.state == MemberState::Alive).count() < count {
                    continue 'poll;
                }
            }
            return Ok(());
        }
        Err(format!("the local cluster did not form within {timeout:?}"))
    }
}
