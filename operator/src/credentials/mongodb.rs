//! The managed MongoDB's users, changed as its root user: the app's user is
//! looked up, created (or its password set) with `readWrite` on the app's
//! database, dropped once unused, and the root password changed.
//!
//! FerretDB (the MongoDB-compatible server the tests run) has users but no
//! roles: it answers a `roles` list with NotImplemented, so the user is then
//! made without one (every FerretDB user may use every database).

use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{ClientOptions, Credential, ServerAddress};
use tracing::warn;

/// MongoDB's error codes the operator expects.
const USER_NOT_FOUND: i32 = 11;
const AUTHENTICATION_FAILED: i32 = 18;
const NOT_IMPLEMENTED: i32 = 238;
const USER_ALREADY_EXISTS: i32 = 51003;

/// How long a connection (TCP, TLS-less handshake, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to look for a server able to answer.
const SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// Why MongoDB could not be changed. Never carries a password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MongoAdminError {
    #[error("cannot reach MongoDB at {addr}: {source}")]
    Unreachable {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach MongoDB at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: MongoError,
    },
    #[error(
        "MongoDB at {addr} accepts none of the root passwords in the credentials Secret for user {user:?}: {source}"
    )]
    Refused {
        addr: String,
        user: String,
        #[source]
        source: MongoError,
    },
    #[error("MongoDB at {addr} failed {command}: {source}")]
    Command {
        addr: String,
        command: &'static str,
        #[source]
        source: MongoError,
    },
}

/// A connection to MongoDB as its root user.
pub(crate) struct MongoAdmin {
    client: mongodb::Client,
    addr: String,
}

impl MongoAdmin {
    /// Connects as `user` with the first of `passwords` MongoDB accepts.
    pub(crate) async fn connect(
        host: &str,
        port: u16,
        user: &str,
        passwords: &[&str],
    ) -> Result<Self, MongoAdminError> {
        let addr = format!("{host}:{port}");
        // The driver waits its whole selection timeout for a server that
        // refuses or does not resolve, then describes its topology: a plain
        // TCP connection first says why, at once.
        let tcp = tokio::net::TcpStream::connect((host, port));
        match tokio::time::timeout(CONNECT_TIMEOUT, tcp).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => return Err(MongoAdminError::Unreachable { addr, source }),
            Err(_) => {
                let source = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {CONNECT_TIMEOUT:?}"),
                );
                return Err(MongoAdminError::Unreachable { addr, source });
            }
        }
        let mut refused = None;
        for password in passwords {
            let options = ClientOptions::builder()
                .hosts(vec![ServerAddress::Tcp {
                    host: host.into(),
                    port: Some(port),
                }])
                .direct_connection(true)
                .app_name("multivac-operator".to_string())
                .connect_timeout(CONNECT_TIMEOUT)
                .server_selection_timeout(SELECTION_TIMEOUT)
                .max_pool_size(1)
                .credential(
                    Credential::builder()
                        .username(user.to_string())
                        .password(password.to_string())
                        .source("admin".to_string())
                        .build(),
                )
                .build();
            let client = mongodb::Client::with_options(options).map_err(|source| {
                MongoAdminError::Connect {
                    addr: addr.clone(),
                    source,
                }
            })?;
            let admin = Self {
                client,
                addr: addr.clone(),
            };
            match admin.run(doc! {"connectionStatus": 1}).await {
                Ok(_) => return Ok(admin),
                Err(e) if is_auth_error(&e) => refused = Some(e),
                Err(source) => return Err(MongoAdminError::Connect { addr, source }),
            }
        }
        Err(MongoAdminError::Refused {
            addr,
            user: user.into(),
            source: refused.unwrap_or_else(|| {
                MongoError::custom("no password in the credentials Secret".to_string())
            }),
        })
    }

    async fn run(&self, command: Document) -> Result<Document, MongoError> {
        self.client.database("admin").run_command(command).await
    }

    async fn command(&self, what: &'static str, command: Document) -> Result<(), MongoAdminError> {
        self.run(command)
            .await
            .map(|_| ())
            .map_err(|source| MongoAdminError::Command {
                addr: self.addr.clone(),
                command: what,
                source,
            })
    }

    /// Whether MongoDB has `user` (in `admin`, where the app's users live).
    pub(crate) async fn has_user(&self, user: &str) -> Result<bool, MongoAdminError> {
        let answer = self
            .run(doc! {"usersInfo": user})
            .await
            .map_err(|source| self.failed("usersInfo", source))?;
        Ok(answer
            .get_array("users")
            .is_ok_and(|users| !users.is_empty()))
    }

    /// `user` exists with `password` and `readWrite` on `database`.
    pub(crate) async fn ensure_user(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<(), MongoAdminError> {
        let roles = vec![doc! {"role": "readWrite", "db": database}];
        let create =
            |roles: Vec<Document>| doc! {"createUser": user, "pwd": password, "roles": roles};
        let update = |roles: Option<Vec<Document>>| {
            let mut d = doc! {"updateUser": user, "pwd": password};
            if let Some(roles) = roles {
                d.insert("roles", roles);
            }
            d
        };
        match self.run(create(roles.clone())).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(USER_ALREADY_EXISTS) => {
                match self.run(update(Some(roles))).await {
                    Err(e) if code(&e) == Some(NOT_IMPLEMENTED) => {
                        self.command("updateUser", update(None)).await
                    }
                    other => other
                        .map(|_| ())
                        .map_err(|source| self.failed("updateUser", source)),
                }
            }
            Err(e) if code(&e) == Some(NOT_IMPLEMENTED) => {
                warn!(addr = %self.addr, "this MongoDB-compatible server has no roles (FerretDB?): user {user} is created without readWrite");
                match self.run(create(vec![])).await {
                    Err(e) if code(&e) == Some(USER_ALREADY_EXISTS) => {
                        self.command("updateUser", update(None)).await
                    }
                    other => other
                        .map(|_| ())
                        .map_err(|source| self.failed("createUser", source)),
                }
            }
            Err(source) => Err(self.failed("createUser", source)),
        }
    }

    /// Drops `user` (nothing to do if it is gone already).
    pub(crate) async fn drop_user(&self, user: &str) -> Result<(), MongoAdminError> {
        match self.run(doc! {"dropUser": user}).await {
            Err(e) if code(&e) == Some(USER_NOT_FOUND) => Ok(()),
            other => other
                .map(|_| ())
                .map_err(|source| self.failed("dropUser", source)),
        }
    }

    /// Sets `user`'s password.
    pub(crate) async fn set_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(), MongoAdminError> {
        self.command("updateUser", doc! {"updateUser": user, "pwd": password})
            .await
    }

    fn failed(&self, command: &'static str, source: MongoError) -> MongoAdminError {
        MongoAdminError::Command {
            addr: self.addr.clone(),
            command,
            source,
        }
    }
}

fn code(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

fn is_auth_error(e: &MongoError) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Authentication { .. })
        || code(e) == Some(AUTHENTICATION_FAILED)
}
