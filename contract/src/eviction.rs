//! Whether a Redis may evict the stream: with a `maxmemory-policy` of the
//! `allkeys-*` family Redis deletes keys of its choice once it reaches
//! `maxmemory`, and [`STREAM`](crate::STREAM) (every accepted, unlearned
//! datum) is a key like any other. The app checks at start and the scaler on
//! each connection, and both report a dangerous policy instead of failing:
//! the Redis may be someone else's, and some providers disable `CONFIG`.

use redis::aio::ConnectionLike;

/// What a Redis said about its `maxmemory-policy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// `noeviction`: at `maxmemory` writes that need memory are refused
    /// (XADD answers OOM, so POST answers 503) and nothing is deleted.
    NoEviction,
    /// A `volatile-*` policy: only keys with a TTL are evicted; the stream
    /// has none, so it is kept (the worker heartbeats may go).
    Volatile(String),
    /// An `allkeys-*` policy: the stream itself may be evicted, losing data.
    AllKeys(String),
    /// A value this code does not know.
    Other(String),
    /// `CONFIG GET` was refused (renamed, disabled by the provider, or not
    /// allowed to this user): the policy could not be checked.
    Unknown(String),
}

impl EvictionPolicy {
    /// From the value of `maxmemory-policy`.
    pub fn parse(value: &str) -> Self {
        match value {
            "noeviction" => Self::NoEviction,
            v if v.starts_with("volatile-") => Self::Volatile(v.to_owned()),
            v if v.starts_with("allkeys-") => Self::AllKeys(v.to_owned()),
            v => Self::Other(v.to_owned()),
        }
    }

    /// True when Redis may delete the stream to free memory.
    pub fn may_evict_the_stream(&self) -> bool {
        matches!(self, Self::AllKeys(_) | Self::Other(_))
    }

    /// The policy's name, or `unknown`: a value from a fixed set, for a
    /// metric label (an unexpected value is `other`).
    pub fn label(&self) -> &'static str {
        const KNOWN: [&str; 8] = [
            "noeviction",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
        ];
        match self {
            Self::NoEviction => "noeviction",
            Self::Volatile(v) | Self::AllKeys(v) => {
                KNOWN.iter().find(|k| **k == v).copied().unwrap_or("other")
            }
            Self::Other(_) => "other",
            Self::Unknown(_) => "unknown",
        }
    }

    /// What to tell the person running this Redis, when anything.
    pub fn warning(&self) -> Option<String> {
        match self {
            Self::AllKeys(v) | Self::Other(v) => Some(format!(
                "Redis maxmemory-policy is {v}: at maxmemory Redis may evict the stream \
                 multivac:data and lose accepted data; set maxmemory-policy noeviction \
                 (POST then answers 503 while Redis is full)"
            )),
            Self::Unknown(why) => Some(format!(
                "cannot read Redis maxmemory-policy ({why}); make sure it is noeviction, \
                 or an allkeys-* policy may evict the stream multivac:data"
            )),
            Self::NoEviction | Self::Volatile(_) => None,
        }
    }
}

/// Reads `maxmemory-policy` with `CONFIG GET`. A refusal by Redis is
/// [`EvictionPolicy::Unknown`], not an error; an error means Redis did not
/// answer (try again later).
pub async fn read_eviction_policy<C: ConnectionLike + Send>(
    conn: &mut C,
) -> Result<EvictionPolicy, redis::RedisError> {
    let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    match reply {
        Ok(pair) => Ok(match pair.as_slice() {
            [_, value] => EvictionPolicy::parse(value),
            _ => EvictionPolicy::Unknown("CONFIG GET maxmemory-policy returned nothing".into()),
        }),
        // Redis answered with a refusal (ERR unknown command, NOPERM, ...);
        // LOADING passes, so it is asked again.
        Err(e) if e.code().is_some_and(|code| code != "LOADING") => {
            Ok(EvictionPolicy::Unknown(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_is_classified() {
        // (value, may evict the stream, label)
        let table = [
            ("noeviction", false, "noeviction"),
            ("volatile-lru", false, "volatile-lru"),
            ("volatile-lfu", false, "volatile-lfu"),
            ("volatile-random", false, "volatile-random"),
            ("volatile-ttl", false, "volatile-ttl"),
            ("allkeys-lru", true, "allkeys-lru"),
            ("allkeys-lfu", true, "allkeys-lfu"),
            ("allkeys-random", true, "allkeys-random"),
            ("allkeys-someday", true, "other"),
            ("surprise", true, "other"),
        ];
        for (value, evicts, label) in table {
            let policy = EvictionPolicy::parse(value);
            assert_eq!(policy.may_evict_the_stream(), evicts, "{value}");
            assert_eq!(policy.label(), label, "{value}");
            assert_eq!(policy.warning().is_some(), evicts, "{value}");
        }
        let unknown = EvictionPolicy::Unknown("ERR unknown command 'CONFIG'".into());
        assert!(!unknown.may_evict_the_stream());
        assert_eq!(unknown.label(), "unknown");
        assert!(unknown.warning().unwrap().contains("unknown command"));
    }
}
