//! One definition of "work waiting", for the app's `/zzz`, `/metrics` and
//! JSON answer and for the operator's scaler.
//!
//! An entry waits from the moment the server appends it to [`STREAM`] until a
//! worker has stored it and [acknowledged](crate::acknowledge) it (XACK and
//! XDEL), or has moved it to the dead-letter stream (also XACK and XDEL). While
//! it waits it is either *undelivered* (no consumer of [`GROUP`] has read it
//! yet) or *pending* (delivered, not yet acknowledged). Because everything
//! that stops waiting is deleted, the stream holds exactly the waiting
//! entries; so when Redis cannot give the group's lag, the stream length
//! stands in for it: `undelivered = len - pending` and, equivalently,
//! `total = max(len, pending)`.

use redis::Value;
use redis::aio::ConnectionLike;

use crate::stream::{GROUP, STREAM};

/// How much work waits for the workers; see the module documentation for the
/// definition both binaries share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Entries not yet delivered to any worker.
    pub undelivered: u64,
    /// Entries delivered to a worker and not yet acknowledged.
    pub pending: u64,
}

impl Backlog {
    /// Everything not yet learned: undelivered plus pending. The figure the
    /// scaler divides by `targetBacklogPerWorker` and `/zzz` calls `backlog`.
    pub fn total(&self) -> u64 {
        self.undelivered.saturating_add(self.pending)
    }
}

/// What Redis said about [`STREAM`] and [`GROUP`], kept apart from the
/// [`Backlog`] it means so that logs and tests can tell the cases apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BacklogReading {
    /// The stream does not exist: nothing was ever accepted (or Redis lost
    /// its data).
    NoStream,
    /// The stream exists but the group does not yet (no worker or server has
    /// created it): every entry waits, none was delivered.
    NoGroup { len: u64 },
    /// Redis 7 computed the group's lag: the entries after its
    /// last-delivered id.
    Lag { lag: u64, pending: u64 },
    /// Redis reported a nil lag, which it does once an entry after the
    /// group's last-delivered id was deleted (acknowledging deletes entries,
    /// see [`acknowledge`](crate::acknowledge)) or trimmed; the stream length
    /// is then the count of waiting entries.
    LenFallback { len: u64, pending: u64 },
}

impl BacklogReading {
    /// The work waiting, by the definition of this module.
    pub fn backlog(&self) -> Backlog {
        match *self {
            BacklogReading::NoStream => Backlog::default(),
            BacklogReading::NoGroup { len } => Backlog {
                undelivered: len,
                pending: 0,
            },
            BacklogReading::Lag { lag, pending } => Backlog {
                undelivered: lag,
                pending,
            },
            // A pending entry deleted behind the workers' back (XDEL without
            // XACK) is still pending but no longer counted by XLEN, hence the
            // saturation: the backlog is then at least the pending count.
            BacklogReading::LenFallback { len, pending } => Backlog {
                undelivered: len.saturating_sub(pending),
                pending,
            },
        }
    }
}

/// Why the backlog could not be read. The messages never contain a URL (the
/// caller knows where it connected; a URL may carry a password).
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    /// The command failed or Redis did not answer.
    #[error("Redis did not answer XINFO GROUPS {STREAM} (or XLEN): {0}")]
    Command(#[source] redis::RedisError),
    /// Redis answered something this code cannot read.
    #[error("unexpected XINFO GROUPS reply from Redis (is it Redis 7 or newer?): {0}")]
    Reply(String),
}

/// Reads the backlog: XINFO GROUPS, plus XLEN only when the group is missing
/// or its lag is nil, so the usual case is one round trip.
pub async fn read_backlog<C: ConnectionLike + Send>(
    conn: &mut C,
) -> Result<BacklogReading, BacklogError> {
    let reply: Result<Value, redis::RedisError> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query_async(conn)
        .await;
    let groups = match reply {
        Ok(groups) => groups,
        Err(e) if is_no_such_key(&e) => return Ok(BacklogReading::NoStream),
        Err(e) => return Err(BacklogError::Command(e)),
    };
    Ok(match parse_groups(&groups)? {
        GroupInfo::Missing => BacklogReading::NoGroup {
            len: xlen(conn).await?,
        },
        GroupInfo::Found {
            lag: Some(lag),
            pending,
        } => BacklogReading::Lag { lag, pending },
        GroupInfo::Found { lag: None, pending } => BacklogReading::LenFallback {
            len: xlen(conn).await?,
            pending,
        },
    })
}

async fn xlen<C: ConnectionLike + Send>(conn: &mut C) -> Result<u64, BacklogError> {
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

/// Finds [`GROUP`] in the XINFO GROUPS reply: an array of groups, each a flat
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

    #[test]
    fn backlog_of_every_reading() {
        use BacklogReading::*;
        // (what Redis said, undelivered, pending, total)
        let table = [
            (NoStream, 0, 0, 0),
            (NoGroup { len: 0 }, 0, 0, 0),
            (NoGroup { len: 25 }, 25, 0, 25),
            (Lag { lag: 0, pending: 0 }, 0, 0, 0),
            (
                Lag {
                    lag: 15,
                    pending: 10,
                },
                15,
                10,
                25,
            ),
            (Lag { lag: 0, pending: 7 }, 0, 7, 7),
            (
                LenFallback {
                    len: 20,
                    pending: 6,
                },
                14,
                6,
                20,
            ),
            (LenFallback { len: 6, pending: 6 }, 0, 6, 6),
            (LenFallback { len: 0, pending: 0 }, 0, 0, 0),
            // A pending entry XDELed without XACK: XLEN no longer counts it.
            (LenFallback { len: 2, pending: 5 }, 0, 5, 5),
            (
                Lag {
                    lag: u64::MAX,
                    pending: 1,
                },
                u64::MAX,
                1,
                u64::MAX,
            ),
        ];
        for (reading, undelivered, pending, total) in table {
            let backlog = reading.backlog();
            assert_eq!(
                backlog,
                Backlog {
                    undelivered,
                    pending
                },
                "{reading:?}"
            );
            assert_eq!(backlog.total(), total, "{reading:?}");
        }
    }

    #[test]
    fn len_fallback_total_is_the_larger_of_len_and_pending() {
        // The two ways the code's history wrote the fallback (the app's
        // `len - pending` undelivered, the scaler's `max(len, pending)`
        // total) are one statement.
        for len in 0..20 {
            for pending in 0..20 {
                let b = BacklogReading::LenFallback { len, pending }.backlog();
                assert_eq!(b.total(), len.max(pending), "len {len}, pending {pending}");
            }
        }
    }

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
