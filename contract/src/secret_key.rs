//! Keys of the credentials Secret the operator generates (`<name>-credentials`)
//! and the default keys it looks for in Secrets a user names; the pods read
//! them through `secretKeyRef`, so these names are part of what users and
//! scripts see.

/// The Redis URL with its password (also the default key of
/// `spec.redis.external.secretRef`).
pub const REDIS_URL: &str = "redis-url";
/// The Redis password alone, for the Redis pod's `requirepass`.
pub const REDIS_PASSWORD: &str = "redis-password";
/// The MongoDB URI with its credentials (also the default key of
/// `spec.mongodb.external.secretRef`).
pub const MONGODB_URI: &str = "mongodb-uri";
/// The MongoDB root user name: for the MongoDB pod's first start and for the
/// operator (it creates, rotates and drops the app's users).
pub const MONGODB_USERNAME: &str = "mongodb-username";
/// The MongoDB root password (see [`MONGODB_USERNAME`]).
pub const MONGODB_PASSWORD: &str = "mongodb-password";
/// The app's own MongoDB user (readWrite on its database only), the one
/// [`MONGODB_URI`] names; absent in Secrets made before it existed, whose URI
/// names the root user until their first rotation.
pub const MONGODB_APP_USERNAME: &str = "mongodb-app-username";
/// The app user's password (see [`MONGODB_APP_USERNAME`]).
pub const MONGODB_APP_PASSWORD: &str = "mongodb-app-password";
/// Default key of the API token in the Secret `spec.apiTokenSecretRef` names.
pub const API_TOKEN: &str = "token";
/// Default key of the CA certificates (PEM) in the Secret a
/// `spec.redis.external.caSecretRef` or `spec.mongodb.external.caSecretRef`
/// names: the key cert-manager and `kubernetes.io/tls` Secrets use.
pub const CA_CERT: &str = "ca.crt";
