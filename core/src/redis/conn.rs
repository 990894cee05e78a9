//! One Redis deployment, standalone or Cluster: the shared connection every script runs on, and
//! the dedicated connections that blocking reads need.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

/// How long a command may go unanswered unless the target says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the store's Redis is.
#[derive(Clone)]
pub enum Target {
    /// One server (or a primary behind a proxy).
    Single(Box<SingleClient>),
    /// A Redis Cluster.
    Cluster(Box<ClusterClients>),
}

/// The client of a one-server target.
#[derive(Clone)]
pub struct SingleClient {
    client: Client,
    /// How long a command of the shared connection may go unanswered.
    command_timeout: Duration,
}

/// The clients of a Cluster target.
#[derive(Clone)]
pub struct ClusterClients {
    /// For the shared connection.
    shared: ClusterClient,
    /// For blocking reads: a long response timeout.
    blocking: ClusterClient,
}

/// A connection to either kind of deployment; scripts and commands run on it alike.
#[derive(Clone)]
pub enum Conn {
    /// A reconnecting connection to one server.
    Manager(ConnectionManager),
    /// A dedicated connection to one server.
    Multiplexed(MultiplexedConnection),
    /// A connection to a Cluster (routes each command by its key's slot).
    Cluster(ClusterConnection),
    /// A Cluster connection made on first use, tried again on each use until it is made.
    LazyCluster(Box<LazyCluster>),
}

/// A Cluster connection made on first use (so a service can start while its Cluster is down).
#[derive(Clone)]
pub struct LazyCluster {
    client: ClusterClient,
    conn: Arc<OnceCell<ClusterConnection>>,
}

impl LazyCluster {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Multiplexed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::LazyCluster(lazy) => Box::pin(async move {
                let mut c = lazy.get().await?;
                c.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::LazyCluster(lazy) => Box::pin(async move {
                let mut c = lazy.get().await?;
                c.req_packed_commands(cmd, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Multiplexed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::LazyCluster(_) => 0,
        }
    }
}

impl Target {
    /// One server, with the default command timeout.
    pub fn single(client: Client) -> Target {
        Target::single_with(client, DEFAULT_COMMAND_TIMEOUT)
    }

    /// One server, whose commands fail after `command_timeout` without an answer.
    pub fn single_with(client: Client, command_timeout: Duration) -> Target {
        Target::Single(Box::new(SingleClient {
            client,
            command_timeout,
        }))
    }

    /// A Cluster reached through any of `nodes`, with the default command timeout.
    pub fn cluster(nodes: &[String]) -> RedisResult<Target> {
        Target::cluster_with(nodes, DEFAULT_COMMAND_TIMEOUT)
    }

    /// A Cluster reached through any of `nodes`, whose commands fail after `command_timeout`.
    pub fn cluster_with(nodes: &[String], command_timeout: Duration) -> RedisResult<Target> {
        let builder = |response: Duration| {
            ClusterClientBuilder::new(nodes.to_vec())
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(response)
                .build()
        };
        Ok(Target::Cluster(Box::new(ClusterClients {
            shared: builder(command_timeout)?,
            blocking: builder(Duration::from_secs(3600))?,
        })))
    }

    /// The shared connection, made lazily (a call made while Redis is down fails after one quick
    /// attempt): for one server, reconnecting; for a Cluster, connected on first success.
    pub async fn shared(&self) -> RedisResult<Conn> {
        match self {
            Target::Single(single) => {
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_response_timeout(Some(single.command_timeout))
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                Ok(Conn::Manager(ConnectionManager::new_lazy_with_config(
                    single.client.clone(),
                    config,
                )?))
            }
            Target::Cluster(clients) => Ok(Conn::LazyCluster(Box::new(LazyCluster {
                client: clients.shared.clone(),
                conn: Arc::new(OnceCell::new()),
            }))),
        }
    }

    /// A connection of its own for blocking reads (no response timeout to cut them short).
    pub async fn blocking(&self) -> RedisResult<Conn> {
        match self {
            Target::Single(single) => {
                let config = AsyncConnectionConfig::new().set_response_timeout(None);
                Ok(Conn::Multiplexed(
                    single
                        .client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster(clients) => Ok(Conn::Cluster(
                clients.blocking.get_async_connection().await?,
            )),
        }
    }
}
