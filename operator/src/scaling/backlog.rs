//! Reads how much work waits for a MultiVac's workers, through one cached
//! connection per MultiVac. What counts as waiting, and the commands that
//! read it (XINFO GROUPS, and XLEN only when needed: one round trip on
//! Redis 7), are the contract's [`read_backlog`], the same the app's `/zzz`
//! and `/metrics` use. On each new connection it also reads Redis'
//! `maxmemory-policy` ([`read_eviction_policy`]), so a Redis that may evict
//! the stream is reported at the cost of one command per connection.

use std::time::Duration;

use multivac_contract::{
    BacklogReading, EvictionPolicy, RedisClientError, read_backlog, read_eviction_policy,
    redis_client, secret_key,
};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::resolver::Resolver;

/// How long to wait for a TCP connect + AUTH, and for each reply. Short, so an
/// unreachable Redis is reported within one poll instead of hanging it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the backlog could not be read. The messages never contain the URL,
/// which carries the password.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    #[error(
        "the Redis URL or its CA is invalid (check the Secret's {key} key and spec.redis.external.caSecretRef): {0}",
        key = secret_key::REDIS_URL
    )]
    InvalidUrl(#[source] RedisClientError),
    #[error("cannot connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
    #[error(transparent)]
    Read(#[from] multivac_contract::BacklogError),
}

/// One cached connection per MultiVac, rebuilt when the URL in the Secret
/// (or the CA) changes or after any error (the next poll reconnects). `Default` has a
/// resolver of its own; the scaler shares one between all its readers.
#[derive(Default)]
pub struct BacklogReader {
    url: Option<(String, Option<Vec<u8>>)>,
    conn: Option<MultiplexedConnection>,
    policy: Option<EvictionPolicy>,
    resolver: Resolver,
}

impl BacklogReader {
    /// A reader resolving host names with `resolver`.
    pub fn new(resolver: Resolver) -> Self {
        Self {
            url: None,
            conn: None,
            policy: None,
            resolver,
        }
    }

    /// Reads the backlog through the Redis at `url`, connecting (again) if needed.
    pub async fn read(&mut self, url: &str) -> Result<BacklogReading, BacklogError> {
        self.read_with_ca(url, None).await
    }

    /// [`BacklogReader::read`] from a `rediss://` Redis whose certificate the
    /// CA `ca` (PEM) signed; `None`: the public roots (or no TLS).
    pub async fn read_with_ca(
        &mut self,
        url: &str,
        ca: Option<&[u8]>,
    ) -> Result<BacklogReading, BacklogError> {
        let target = (url.to_owned(), ca.map(<[u8]>::to_vec));
        if self.url.as_ref() != Some(&target) {
            self.conn = None;
            self.url = Some(target);
        }
        let mut conn = match &self.conn {
            Some(c) => c.clone(),
            None => {
                let mut c = connect(url, ca, &self.resolver).await?;
                self.policy = read_eviction_policy(&mut c).await.ok();
                self.conn = Some(c.clone());
                c
            }
        };
        let result = read_backlog(&mut conn).await;
        if result.is_err() {
            // A broken or half-open connection is not reused.
            self.conn = None;
        }
        Ok(result?)
    }

    /// Redis' `maxmemory-policy` as read on the current connection (`None`
    /// when it did not answer).
    pub fn eviction_policy(&self) -> Option<&EvictionPolicy> {
        self.policy.as_ref()
    }
}

async fn connect(
    url: &str,
    ca: Option<&[u8]>,
    resolver: &Resolver,
) -> Result<MultiplexedConnection, BacklogError> {
    let client = redis_client(url, ca).map_err(BacklogError::InvalidUrl)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_dns_resolver(resolver.clone());
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(BacklogError::Connect)
}
