//! Reads how much work is waiting for a MultiVac's workers: the consumer
//! group's lag (entries not yet delivered to any worker) plus its pending
//! entries (delivered, not yet acknowledged), in one round trip on Redis 7.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};

/// The stream the server appends to and the workers read (same names as the app).
pub const STREAM: &str = "multivac:data";
/// The consumer group the workers read the stream with.
pub const GROUP: &str = "multivac-workers";

/// How long to wait for a TCP connect + AUTH, and for each reply. Short, so an
/// unreachable Redis is reported within one poll instead of hanging it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the backlog could not be read. The messages never contain the URL,
/// which carries the password.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    #[error("the Redis URL is invalid (check the Secret's redis-url key): {0}")]
    InvalidUrl(#[source] redis::RedisError),
    #[error("cannot connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
    #[error("Redis did not answer XINFO GROUPS {STREAM}: {0}")]
    Command(#[source] redis::RedisError),
    #[error("unexpected XINFO GROUPS reply from Redis (is it Redis 7 or newer?): {0}")]
    Reply(String),
}

/// What was read and how (the source is logged at debug level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub entries: u64,
    pub source: Source,
}

/// Where the figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The stream does not exist yet: nothing was ever submitted.
    NoStream,
    /// The stream exists but no worker created the group yet: every entry waits.
    NoGroup,
    /// `lag + pending` from XINFO GROUPS.
    Lag,
    /// XINFO GROUPS reported a nil lag; computed from XLEN instead.
    LenFallback,
}

/// One cached connection per MultiVac, rebuilt when the URL in the Secret
/// changes or after any error (the next poll reconnects).
#[derive(Default)]
pub struct BacklogReader {
    url: Option<String>,
    conn: Option<MultiplexedConnection>,
}

impl BacklogReader {
    /// Reads the backlog through the Redis at `url`, connecting (again) if needed.
    pub async fn read(&mut self, url: &str) -> Result<Backlog, BacklogError> {
        if self.url.as_deref() != Some(url) {
            self.conn = None;
            self.url = Some(url.to_owned());
        }
        let mut conn = match &self.conn {
            Some(c) => c.clone(),
            None => {
                let c = connect(url).await?;
                self.conn = Some(c.clone());
                c
            }
        };
        let result = read_backlog(&mut conn).await;
        if matches!(
            result,
            Err(BacklogError::Command(_) | BacklogError::Reply(_))
        ) {
            // A broken or half-open connection is not reused.
            self.conn = None;
        }
        result
    }
}

async fn connect(url: &str) -> Result<MultiplexedConnection, BacklogError> {
    let client = Client::open(url).map_err(BacklogError::InvalidUrl)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(BacklogError::Connect)
}

/// XINFO GROUPS, plus XLEN only when the group is missing or its lag is nil.
pub async fn read_backlog(conn: &mut MultiplexedConnection) -> Result<Backlog, BacklogError> {
    let reply: Result<Value, redis::RedisError> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query_async(conn)
        .await;
    let groups = match reply {
        Ok(v) => v,
        Err(e) if is_no_such_key(&e) => {
            return Ok(Backlog {
                entries: 0,
                source: Source::NoStream,
            });
        }
        Err(e) => return Err(BacklogError::Command(e)),
    };
    match parse_groups(&groups)? {
        GroupInfo::Missing => Ok(Backlog {
            entries: xlen(conn).await?,
            source: Source::NoGroup,
        }),
        GroupInfo::Found {
            lag: Some(lag),
            pending,
        } => Ok(Backlog {
            entries: lag.saturating_add(pending),
            source: Source::Lag,
        }),
        GroupInfo::Found { lag: None, pending } => {
            // Redis 7 reports a nil lag when it cannot compute it cheaply: an
            // entry between the group's last-delivered-id and the stream's end
            // was deleted (XDEL), or the stream was trimmed past it. Both
            // happen when entries are deleted after being processed, so the
            // stream then holds only undelivered and pending entries and its
            // length is the backlog. If processed entries were kept, XLEN
            // over-counts: the safe side (more workers, never lost work).
            let len = xlen(conn).await?;
            Ok(Backlog {
                entries: len.max(pending),
                source: Source::LenFallback,
            })
        }
    }
}

async fn xlen(conn: &mut MultiplexedConnection) -> Result<u64, BacklogError> {
    redis::cmd("XLEN")
        .arg(STREAM)
        .query_async(conn)
        .await
        .map_err(BacklogError::Command)
}

fn is_no_such_key(e: &redis::RedisError) -> bool {
    e.to_string().to_ascii_lowercase().contains("no such key")
}

#[derive(Debug, PartialEq, Eq)]
enum GroupInfo {
    Missing,
    Found { lag: Option<u64>, pending: u64 },
}

/// Finds our group in the XINFO GROUPS reply: an array of groups, each a flat
/// key/value array (RESP2) or a map (RESP3).
fn parse_groups(reply: &Value) -> Result<GroupInfo, BacklogError> {
    let Value::Array(groups) = reply else {
        return Err(BacklogError::Reply(format!(
            "expected an array, got {reply:?}"
        )));
    };
    for group in groups {
        let fields = group
            .as_map_iter()
            .ok_or_else(|| BacklogError::Reply(format!("expected a map, got {group:?}")))?;
        let (mut name, mut lag, mut pending, mut has_lag) = (None, None, None, false);
        for (k, v) in fields {
            match as_text(k).as_deref() {
                Some("name") => name = as_text(v),
                Some("pending") => pending = as_u64(v),
                Some("lag") => {
                    has_lag = true;
                    lag = as_u64(v);
                }
                _ => {}
            }
        }
        if name.as_deref() == Some(GROUP) {
            if !has_lag {
                return Err(BacklogError::Reply(
                    "no lag field: Redis 7 or newer is needed".into(),
                ));
            }
            let pending = pending
                .ok_or_else(|| BacklogError::Reply("group without a pending count".into()))?;
            return Ok(GroupInfo::Found { lag, pending });
        }
    }
    Ok(GroupInfo::Missing)
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn group(name: &str, pending: i64, lag: Value) -> Value {
        Value::Array(vec![
            bulk("name"),
            bulk(name),
            bulk("consumers"),
            Value::Int(2),
            bulk("pending"),
            Value::Int(pending),
            bulk("last-delivered-id"),
            bulk("1-0"),
            bulk("entries-read"),
            Value::Int(10),
            bulk("lag"),
            lag,
        ])
    }

    #[test]
    fn finds_our_group_among_others() {
        let reply = Value::Array(vec![
            group("someone-else", 99, Value::Int(99)),
            group(GROUP, 3, Value::Int(40)),
        ]);
        assert_eq!(
            parse_groups(&reply).unwrap(),
            GroupInfo::Found {
                lag: Some(40),
                pending: 3
            }
        );
    }

    #[test]
    fn nil_lag_and_missing_group() {
        let reply = Value::Array(vec![group(GROUP, 5, Value::Nil)]);
        assert_eq!(
            parse_groups(&reply).unwrap(),
            GroupInfo::Found {
                lag: None,
                pending: 5
            }
        );
        let reply = Value::Array(vec![group("other", 5, Value::Int(1))]);
        assert_eq!(parse_groups(&reply).unwrap(), GroupInfo::Missing);
        assert_eq!(
            parse_groups(&Value::Array(vec![])).unwrap(),
            GroupInfo::Missing
        );
    }

    #[test]
    fn resp3_map_and_bad_replies() {
        let reply = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk(GROUP)),
            (bulk("pending"), Value::Int(1)),
            (bulk("lag"), Value::Int(2)),
        ])]);
        assert_eq!(
            parse_groups(&reply).unwrap(),
            GroupInfo::Found {
                lag: Some(2),
                pending: 1
            }
        );
        // Redis 6 has no lag field: say so instead of guessing.
        let redis6 = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk(GROUP),
            bulk("pending"),
            Value::Int(1),
        ])]);
        let err = parse_groups(&redis6).unwrap_err().to_string();
        assert!(err.contains("Redis 7"), "{err}");
        assert!(parse_groups(&Value::Int(1)).is_err());
    }
}
