//! The managed Redis's passwords, changed in place: the `default` user may
//! hold several (ACL), so during a rotation it accepts the old and the new
//! one. Passwords travel as their SHA-256 (`#<hash>` adds one, `!<hash>`
//! removes one), so not even Redis's error messages can echo a password.

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value,
};

use super::digest;
use crate::scaling::backlog::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};

/// Why Redis could not be changed. Never carries a password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisAdminError {
    #[error("cannot reach Redis at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis at {addr} accepts none of the passwords in the credentials Secret: {source}")]
    Refused {
        addr: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis at {addr} failed {command}: {source}")]
    Command {
        addr: String,
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
}

/// A connection to Redis as its `default` user.
pub(crate) struct RedisAdmin {
    conn: MultiplexedConnection,
    addr: String,
}

impl RedisAdmin {
    /// Connects with the first of `passwords` Redis accepts.
    pub(crate) async fn connect(
        host: &str,
        port: u16,
        passwords: &[&str],
    ) -> Result<Self, RedisAdminError> {
        let addr = format!("{host}:{port}");
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut refused = None;
        for password in passwords {
            let info = ConnectionAddr::Tcp(host.into(), port)
                .into_connection_info()
                .map_err(|source| RedisAdminError::Connect {
                    addr: addr.clone(),
                    source,
                })?
                .set_redis_settings(RedisConnectionInfo::default().set_password(password));
            let client = redis::Client::open(info).map_err(|source| RedisAdminError::Connect {
                addr: addr.clone(),
                source,
            })?;
            match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(conn) => return Ok(Self { conn, addr }),
                Err(e) if is_auth_error(&e) => refused = Some(e),
                Err(source) => return Err(RedisAdminError::Connect { addr, source }),
            }
        }
        Err(RedisAdminError::Refused {
            addr,
            source: refused.unwrap_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "no password"))
            }),
        })
    }

    /// SHA-256 digests of the `default` user's passwords.
    async fn password_digests(&mut self) -> Result<Vec<String>, RedisAdminError> {
        let reply: Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg("default")
            .query_async(&mut self.conn)
            .await
            .map_err(|source| self.failed("ACL GETUSER", source))?;
        Ok(field(&reply, "passwords"))
    }

    /// Whether Redis accepts `password` now.
    pub(crate) async fn accepts(&mut self, password: &str) -> Result<bool, RedisAdminError> {
        Ok(self
            .password_digests()
            .await?
            .contains(&digest(password.as_bytes())))
    }

    /// Makes Redis accept each of `passwords` (beside those it accepts already).
    pub(crate) async fn allow(&mut self, passwords: &[&str]) -> Result<(), RedisAdminError> {
        let have = self.password_digests().await?;
        let add: Vec<String> = passwords
            .iter()
            .map(|p| digest(p.as_bytes()))
            .filter(|d| !have.contains(d))
            .map(|d| format!("#{d}"))
            .collect();
        if add.is_empty() {
            return Ok(());
        }
        self.setuser(&add).await
    }

    /// Makes Redis refuse `password` (nothing to do if it does already).
    pub(crate) async fn forbid(&mut self, password: &str) -> Result<(), RedisAdminError> {
        let d = digest(password.as_bytes());
        if !self.password_digests().await?.contains(&d) {
            return Ok(());
        }
        self.setuser(&[format!("!{d}")]).await
    }

    async fn setuser(&mut self, rules: &[String]) -> Result<(), RedisAdminError> {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg(rules)
            .query_async(&mut self.conn)
            .await
            .map_err(|source| self.failed("ACL SETUSER", source))?;
        Ok(())
    }

    fn failed(&self, command: &'static str, source: redis::RedisError) -> RedisAdminError {
        RedisAdminError::Command {
            addr: self.addr.clone(),
            command,
            source,
        }
    }
}

fn is_auth_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.code().is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH")
}

/// The strings of `name` in an `ACL GETUSER` reply (a flat map in RESP2, a
/// map in RESP3).
fn field(reply: &Value, name: &str) -> Vec<String> {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|c| Some((c.first()?, c.get(1)?)))
            .collect(),
        Value::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
        _ => vec![],
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    pairs
        .into_iter()
        .find(|(k, _)| text(k).as_deref() == Some(name))
        .map(|(_, v)| match v {
            Value::Array(items) | Value::Set(items) => items.iter().filter_map(text).collect(),
            _ => vec![],
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getuser_reply_is_read_in_both_protocols() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![
            bulk("flags"),
            Value::Array(vec![bulk("on")]),
            bulk("passwords"),
            Value::Array(vec![bulk("aa"), bulk("bb")]),
        ]);
        assert_eq!(field(&resp2, "passwords"), ["aa", "bb"]);
        let resp3 = Value::Map(vec![(bulk("passwords"), Value::Array(vec![bulk("cc")]))]);
        assert_eq!(field(&resp3, "passwords"), ["cc"]);
        assert!(field(&resp3, "keys").is_empty());
    }
}
