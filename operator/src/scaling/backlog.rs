//! Reads how much work waits for a MultiVac's workers, through one cached
//! connection per MultiVac. What counts as waiting, and the commands that
//! read it (XINFO GROUPS, and XLEN only when needed: one round trip on
//! Redis 7), are the contract's [`read_backlog`], the same the app's `/zzz`
//! and `/metrics` use.

use std::time::Duration;

use multivac_contract::{BacklogReading, read_backlog, secret_key};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

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
        "the Redis URL is invalid (check the Secret's {key} key): {0}",
        key = secret_key::REDIS_URL
    )]
    InvalidUrl(#[source] redis::RedisError),
    #[error("cannot connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
    #[error(transparent)]
    Read(#[from] multivac_contract::BacklogError),
}

/// One cached connection per MultiVac, rebuilt when the URL in the Secret
/// changes or after any error (the next poll reconnects). `Default` has a
/// resolver of its own; the scaler shares one between all its readers.
#[derive(Default)]
pub struct BacklogReader {
    url: Option<String>,
    conn: Option<MultiplexedConnection>,
    resolver: Resolver,
}

impl BacklogReader {
    /// A reader resolving host names with `resolver`.
    pub fn new(resolver: Resolver) -> Self {
        Self {
            url: None,
            conn: None,
            resolver,
        }
    }

    /// Reads the backlog through the Redis at `url`, connecting (again) if needed.
    pub async fn read(&mut self, url: &str) -> Result<BacklogReading, BacklogError> {
        if self.url.as_deref() != Some(url) {
            self.conn = None;
            self.url = Some(url.to_owned());
        }
        let mut conn = match &self.conn {
            Some(c) => c.clone(),
            None => {
                let c = connect(url, &self.resolver).await?;
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
}

async fn connect(url: &str, resolver: &Resolver) -> Result<MultiplexedConnection, BacklogError> {
    let client = Client::open(url).map_err(BacklogError::InvalidUrl)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_dns_resolver(resolver.clone());
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(BacklogError::Connect)
}
