//! Rotation of the generated credentials, on request: set the MultiVac's
//! annotation [`ROTATE_ANNOTATION`] to a value it has not had (a date, a
//! ticket number) and the operator changes the passwords inside Redis and
//! MongoDB, then in the Secret, then rolls the pods that use them, in an
//! order in which every request finds credentials that work:
//!
//! 1. **Prepared**: new passwords in working keys of the Secret (`*-next`),
//!    before any store knows them, so a crash never leaves a store with a
//!    password no Secret holds.
//! 2. **Switched**: Redis's `default` user accepts the old and the new
//!    password (Redis keeps several); MongoDB has the app's other user
//!    (`multivac-a` / `multivac-b`: a MongoDB user has one password, so two
//!    users alternate) with `readWrite` on the app's database. Then the
//!    Secret's connection strings name the new ones: the app pods' digest of
//!    their Secrets changes and they roll (RollingUpdate: new pods are ready
//!    before old ones stop; the Redis pod re-reads the Secret if it restarts).
//! 3. **RolledOut**: the server and worker Deployments run only new pods;
//!    the time is recorded.
//! 4. **Done**, [`DRAIN`] later (an old worker may still finish its batch):
//!    Redis forgets the old password, the old app user is dropped (never the
//!    root user: a MultiVac from before app users moves from root to
//!    `multivac-a` on its first rotation), the root password is changed and
//!    the working keys are removed.
//!
//! The Secret's annotations say where it is: `multivac.io/rotating` (the
//! request acted on) and `multivac.io/rotation-phase` while it runs,
//! `multivac.io/rotated` (the request done) after.
//!
//! Each step is one write of the Secret conditioned on its resourceVersion,
//! and the store changes before it are idempotent, so a restarted operator
//! (or a new leader) resumes where the last one stopped, and a stale one
//! cannot overwrite a newer step. Store writes check the leader fence first.

use std::time::Duration;

use jiff::Timestamp;

/// Now, in whole seconds: the same string on every read of the annotation.
fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}
use k8s_openapi::ByteString;
use kube::runtime::events::EventType;
use multivac_contract::secret_key;
use serde_json::{Map, Value, json};

use super::mongodb::{MongoAdmin, MongoAdminError};
use super::redis::{RedisAdmin, RedisAdminError};
use super::{APP_USERNAMES, Credentials, MONGODB_PORT, REDIS_PORT, mongodb_uri, redis_url};
use crate::cluster::Cluster;
use crate::context::Context;
use crate::fence::Fenced;
use crate::validated::{Store, Validated};

/// The MultiVac annotation that asks for a rotation: any value it has not had.
pub(crate) const ROTATE_ANNOTATION: &str = "multivac.io/rotate-credentials";
/// On the Secret: the value of [`ROTATE_ANNOTATION`] whose rotation is done
/// (or that the Secret was created with): what a script waits for.
pub(crate) const ROTATED_ANNOTATION: &str = "multivac.io/rotated";
/// On the Secret: the value of [`ROTATE_ANNOTATION`] being acted on.
const ROTATING_ANNOTATION: &str = "multivac.io/rotating";
/// On the Secret: the step reached by the rotation in progress.
const PHASE_ANNOTATION: &str = "multivac.io/rotation-phase";
/// On the Secret: when the new credentials were rolled out.
const ROLLED_OUT_ANNOTATION: &str = "multivac.io/rotation-rolled-out-at";

/// Working keys of the Secret while a rotation runs.
const REDIS_NEXT: &str = "redis-password-next";
const REDIS_PREVIOUS: &str = "redis-password-previous";
const ROOT_NEXT: &str = "mongodb-password-next";
const APP_USER_NEXT: &str = "mongodb-app-username-next";
const APP_PASSWORD_NEXT: &str = "mongodb-app-password-next";
const APP_USER_PREVIOUS: &str = "mongodb-app-username-previous";

/// How long old credentials stay valid after the rollout: the worker's
/// termination grace period (60 s: an old worker may finish and acknowledge
/// its batch) plus a margin.
pub(crate) const DRAIN: Duration = Duration::from_secs(65);
/// How soon a rotation in progress is looked at again.
const STEP_INTERVAL: Duration = Duration::from_secs(5);
/// How soon a blocked rotation is tried again.
const RETRY_INTERVAL: Duration = Duration::from_secs(15);
/// Upper bound of one step's store changes.
const STORE_BUDGET: Duration = Duration::from_secs(10);

/// What a rotation step means for the reconcile.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// While a rotation runs: where it is (the Progressing condition's message).
    pub(crate) message: Option<String>,
    /// When to reconcile again to go on.
    pub(crate) requeue: Option<Duration>,
    /// An Event to publish about the MultiVac: (type, reason, note).
    pub(crate) event: Option<(EventType, &'static str, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Prepared,
    Switched,
    RolledOut,
}

/// The next step, from the request, the Secret and the rollout (pure).
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Idle,
    Prepare,
    Switch,
    AwaitRollout,
    MarkRolledOut,
    /// How long still, and when (for a message that does not change).
    AwaitDrain(Duration, Timestamp),
    Finish,
}

/// When old credentials rolled out at `at` are removed.
fn removal(at: Timestamp) -> Timestamp {
    at.checked_add(DRAIN).unwrap_or(at)
}

/// The status message while old pods may still use the old credentials.
fn draining(removal: Timestamp) -> String {
    format!("rolled out; the old credentials are removed at {removal}, once old pods have stopped")
}

fn phase(creds: &Credentials) -> Phase {
    match creds.annotation(PHASE_ANNOTATION) {
        Some("Prepared") => Phase::Prepared,
        Some("Switched") => Phase::Switched,
        Some("RolledOut") => Phase::RolledOut,
        _ => Phase::Idle,
    }
}

fn plan(requested: Option<&str>, creds: &Credentials, rolled_out: bool, now: Timestamp) -> Step {
    match phase(creds) {
        Phase::Idle => match requested {
            Some(r) if !r.is_empty() && Some(r) != creds.annotation(ROTATED_ANNOTATION) => {
                Step::Prepare
            }
            _ => Step::Idle,
        },
        Phase::Prepared => Step::Switch,
        Phase::Switched if rolled_out => Step::MarkRolledOut,
        Phase::Switched => Step::AwaitRollout,
        Phase::RolledOut => {
            let Some(at) = creds
                .annotation(ROLLED_OUT_ANNOTATION)
                .and_then(|t| t.parse::<Timestamp>().ok())
            else {
                return Step::Finish;
            };
            // A time ahead of this clock counts as now: the whole wait again.
            let since = now
                .duration_since(at)
                .max(jiff::SignedDuration::ZERO)
                .unsigned_abs();
            match DRAIN.checked_sub(since) {
                Some(left) if !left.is_zero() => Step::AwaitDrain(left, removal(at)),
                _ => Step::Finish,
            }
        }
    }
}

/// Why a step could not be taken. Never carries a password.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error(transparent)]
    Redis(#[from] RedisAdminError),
    #[error(transparent)]
    Mongo(Box<MongoAdminError>),
    #[error("cannot update the credentials Secret: {0}")]
    Secret(#[from] crate::error::Error),
    #[error("the stores did not answer within {}s", STORE_BUDGET.as_secs())]
    Timeout,
}

/// Takes the next step of the rotation of `creds` (the live credentials
/// Secret of `mv`), if one is requested or in progress. `rolled_out`: every
/// server and worker pod runs the current template. Never fails the
/// reconcile: a blocked step is reported and retried.
pub(crate) async fn advance(
    ctx: &Context,
    cluster: &Cluster<'_>,
    mv: &Validated<'_>,
    creds: &Credentials,
    rolled_out: bool,
) -> Progress {
    let requested = mv.annotation(ROTATE_ANNOTATION);
    let step = plan(requested, creds, rolled_out, Timestamp::now());
    if step == Step::Idle {
        return Progress::default();
    }
    let token = match step {
        Step::Prepare => requested.unwrap_or_default(),
        _ => creds.annotation(ROTATING_ANNOTATION).unwrap_or_default(),
    }
    .to_string();
    let rotating =
        |what: String| format!("rotating the credentials ({ROTATE_ANNOTATION}={token}): {what}");
    let stores = Stores { ctx, mv, creds };
    let done = match step {
        Step::Idle => unreachable!("returned above"),
        Step::Prepare => cluster
            .patch_secret(&creds.name, &prepare(creds, mv, &token))
            .await
            .map(|()| "new passwords prepared".to_string())
            .map_err(StepError::from),
        Step::Switch => match within_budget(stores.switch()).await {
            Ok(()) => cluster
                .patch_secret(&creds.name, &switch(creds, mv))
                .await
                .map(|()| {
                    "the stores accept the old and the new credentials; the server and workers roll to the new ones".to_string()
                })
                .map_err(StepError::from),
            Err(e) => Err(e),
        },
        Step::AwaitRollout => {
            // Old pods must keep working even if Redis restarted meanwhile
            // (it then knows only the Secret's current password).
            let healed = within_budget(stores.keep_previous()).await;
            return Progress {
                message: Some(rotating(match healed {
                    Ok(()) => "waiting for the server and workers to roll out with the new credentials".into(),
                    Err(e) => format!("waiting for the rollout; Redis cannot be checked: {e}"),
                })),
                requeue: Some(STEP_INTERVAL),
                event: None,
            };
        }
        Step::MarkRolledOut => {
            let now = now_seconds();
            cluster
                .patch_secret(&creds.name, &rolled_out_at(creds, now))
                .await
                .map(|()| draining(removal(now)))
                .map_err(StepError::from)
        }
        Step::AwaitDrain(left, removal) => {
            return Progress {
                message: Some(rotating(draining(removal))),
                requeue: Some(left.min(STEP_INTERVAL).max(Duration::from_secs(1))),
                event: None,
            };
        }
        Step::Finish => match within_budget(stores.finish()).await {
            Ok(()) => cluster
                .patch_secret(&creds.name, &finish(creds))
                .await
                .map(|()| String::new())
                .map_err(StepError::from),
            Err(e) => Err(e),
        },
    };
    match (step, done) {
        (Step::Finish, Ok(_)) => Progress {
            message: None,
            requeue: None,
            event: Some((
                EventType::Normal,
                "CredentialsRotated",
                format!(
                    "rotated the credentials ({ROTATE_ANNOTATION}={token}): the old ones no longer work"
                ),
            )),
        },
        (_, Ok(what)) => Progress {
            message: Some(rotating(what.clone())),
            requeue: Some(STEP_INTERVAL),
            event: Some((EventType::Normal, "CredentialsRotation", rotating(what))),
        },
        (_, Err(e)) => {
            let what = rotating(format!("blocked: {e}; retrying"));
            Progress {
                message: Some(what.clone()),
                requeue: Some(RETRY_INTERVAL),
                event: Some((EventType::Warning, "CredentialsRotationBlocked", what)),
            }
        }
    }
}

impl From<MongoAdminError> for StepError {
    fn from(e: MongoAdminError) -> Self {
        Self::Mongo(Box::new(e))
    }
}

/// `f`, or [`StepError::Timeout`] once it took longer than [`STORE_BUDGET`].
pub(super) async fn within_budget<T>(
    f: impl Future<Output = Result<T, StepError>>,
) -> Result<T, StepError> {
    tokio::time::timeout(STORE_BUDGET, f)
        .await
        .unwrap_or(Err(StepError::Timeout))
}

/// The changes inside the stores, one step at a time.
pub(super) struct Stores<'a> {
    pub(super) ctx: &'a Context,
    pub(super) mv: &'a Validated<'a>,
    pub(super) creds: &'a Credentials,
}

impl Stores<'_> {
    fn value(&self, key: &str) -> Option<&str> {
        self.creds.value(key)
    }

    fn redis_managed(&self) -> bool {
        matches!(self.mv.redis, Store::Managed(_))
    }

    fn mongodb_managed(&self) -> bool {
        matches!(self.mv.mongodb, Store::Managed(_))
    }

    /// A connection to change Redis: only while this process may write (checked
    /// again before each change, as connecting takes time).
    async fn redis(&self, passwords: &[&str]) -> Result<RedisAdmin, StepError> {
        self.fence("connecting to Redis to change its passwords")?;
        let (host, port) = self.ctx.store_address(
            &service_host(&self.mv.redis_name(), self.mv.namespace),
            REDIS_PORT,
        );
        Ok(RedisAdmin::connect(&host, port, passwords).await?)
    }

    /// A connection to change MongoDB's users, as [`Self::redis`].
    pub(super) async fn mongodb(&self) -> Result<MongoAdmin, StepError> {
        self.fence("connecting to MongoDB to change its users")?;
        let (host, port) = self.ctx.store_address(
            &service_host(&self.mv.mongodb_name(), self.mv.namespace),
            MONGODB_PORT,
        );
        let root = self
            .value(secret_key::MONGODB_USERNAME)
            .unwrap_or(super::ROOT_USERNAME);
        let passwords: Vec<&str> = [
            self.value(secret_key::MONGODB_PASSWORD),
            self.value(ROOT_NEXT),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(MongoAdmin::connect(&host, port, root, &passwords).await?)
    }

    pub(super) fn fence(&self, what: &str) -> Result<(), StepError> {
        Ok(self.ctx.fence.check(&format!(
            "{what} for {}/{}",
            self.mv.namespace, self.mv.name
        ))?)
    }

    /// Redis accepts both passwords; MongoDB has the new app user.
    async fn switch(&self) -> Result<(), StepError> {
        if self.redis_managed()
            && let (Some(current), Some(next)) = (
                self.value(secret_key::REDIS_PASSWORD),
                self.value(REDIS_NEXT),
            )
        {
            let mut redis = self.redis(&[current, next]).await?;
            self.fence("Redis ACL SETUSER")?;
            redis.allow(&[current, next]).await?;
        }
        if self.mongodb_managed()
            && let (Some(user), Some(password)) =
                (self.value(APP_USER_NEXT), self.value(APP_PASSWORD_NEXT))
        {
            let mongodb = self.mongodb().await?;
            self.fence("MongoDB createUser")?;
            mongodb
                .ensure_user(user, password, &self.mv.spec.mongodb.database)
                .await?;
        }
        Ok(())
    }

    /// While old pods run: Redis still accepts their password.
    async fn keep_previous(&self) -> Result<(), StepError> {
        if self.redis_managed()
            && let (Some(current), Some(previous)) = (
                self.value(secret_key::REDIS_PASSWORD),
                self.value(REDIS_PREVIOUS),
            )
        {
            let mut redis = self.redis(&[current, previous]).await?;
            if !redis.accepts(previous).await? || !redis.accepts(current).await? {
                self.fence("Redis ACL SETUSER")?;
                redis.allow(&[current, previous]).await?;
            }
        }
        Ok(())
    }

    /// The old credentials stop working; the root password changes.
    async fn finish(&self) -> Result<(), StepError> {
        if self.redis_managed()
            && let (Some(current), Some(previous)) = (
                self.value(secret_key::REDIS_PASSWORD),
                self.value(REDIS_PREVIOUS),
            )
        {
            let mut redis = self.redis(&[current]).await?;
            self.fence("Redis ACL SETUSER")?;
            redis.forbid(previous).await?;
        }
        let previous_user = self.value(APP_USER_PREVIOUS);
        let root_next = self.value(ROOT_NEXT);
        if self.mongodb_managed() && (previous_user.is_some() || root_next.is_some()) {
            let mongodb = self.mongodb().await?;
            let root = self
                .value(secret_key::MONGODB_USERNAME)
                .unwrap_or(super::ROOT_USERNAME);
            if let Some(user) = previous_user
                && user != root
                && user != self.creds.app_username()
            {
                self.fence("MongoDB dropUser")?;
                mongodb.drop_user(user).await?;
            }
            if let Some(next) = root_next {
                self.fence("MongoDB updateUser")?;
                mongodb.set_password(root, next).await?;
            }
        }
        Ok(())
    }
}

/// `<service>.<namespace>.svc`: how the pods (and, in a cluster, the
/// operator) reach a managed store.
pub(crate) fn service_host(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc")
}

/// A JSON merge patch of the Secret, conditioned on the version read.
#[derive(Default)]
struct SecretPatch {
    data: Map<String, Value>,
    annotations: Map<String, Value>,
}

impl SecretPatch {
    fn set(&mut self, key: &str, value: &str) {
        let encoded =
            serde_json::to_value(ByteString(value.as_bytes().to_vec())).unwrap_or(Value::Null);
        self.data.insert(key.into(), encoded);
    }

    fn remove(&mut self, key: &str) {
        self.data.insert(key.into(), Value::Null);
    }

    fn annotate(&mut self, key: &str, value: Option<&str>) {
        self.annotations.insert(key.into(), json!(value));
    }

    fn body(self, creds: &Credentials) -> Value {
        json!({
            "metadata": {"resourceVersion": creds.resource_version, "annotations": self.annotations},
            "data": self.data,
        })
    }
}

/// Step 1: the new passwords, for the stores the operator runs.
fn prepare(creds: &Credentials, mv: &Validated, token: &str) -> Value {
    let mut p = SecretPatch::default();
    if matches!(mv.redis, Store::Managed(_)) {
        p.set(REDIS_NEXT, &super::new_password());
    }
    if matches!(mv.mongodb, Store::Managed(_)) {
        let other = match creds.app_username() {
            u if u == APP_USERNAMES[0] => APP_USERNAMES[1],
            _ => APP_USERNAMES[0],
        };
        p.set(APP_USER_NEXT, other);
        p.set(APP_PASSWORD_NEXT, &super::new_password());
        p.set(ROOT_NEXT, &super::new_password());
    }
    p.annotate(ROTATING_ANNOTATION, Some(token));
    p.annotate(PHASE_ANNOTATION, Some("Prepared"));
    p.body(creds)
}

/// Step 2: the connection strings name the new credentials; the old ones
/// are kept to be removed in step 4.
fn switch(creds: &Credentials, mv: &Validated) -> Value {
    let mut p = SecretPatch::default();
    if let Some(next) = creds.value(REDIS_NEXT) {
        let host = format!(
            "{}:{REDIS_PORT}",
            service_host(&mv.redis_name(), mv.namespace)
        );
        if let Some(current) = creds.value(secret_key::REDIS_PASSWORD) {
            p.set(REDIS_PREVIOUS, current);
        }
        p.set(secret_key::REDIS_PASSWORD, next);
        p.set(secret_key::REDIS_URL, &redis_url(next, &host));
        p.remove(REDIS_NEXT);
    }
    if let (Some(user), Some(password)) =
        (creds.value(APP_USER_NEXT), creds.value(APP_PASSWORD_NEXT))
    {
        let host = format!(
            "{}:{MONGODB_PORT}",
            service_host(&mv.mongodb_name(), mv.namespace)
        );
        p.set(APP_USER_PREVIOUS, creds.app_username());
        p.set(secret_key::MONGODB_APP_USERNAME, user);
        p.set(secret_key::MONGODB_APP_PASSWORD, password);
        p.set(secret_key::MONGODB_URI, &mongodb_uri(user, password, &host));
        p.remove(APP_USER_NEXT);
        p.remove(APP_PASSWORD_NEXT);
    }
    p.annotate(PHASE_ANNOTATION, Some("Switched"));
    p.body(creds)
}

/// Step 3: when the pods ran only the new credentials.
fn rolled_out_at(creds: &Credentials, now: Timestamp) -> Value {
    let mut p = SecretPatch::default();
    p.annotate(PHASE_ANNOTATION, Some("RolledOut"));
    p.annotate(ROLLED_OUT_ANNOTATION, Some(&now.to_string()));
    p.body(creds)
}

/// Step 4: the new root password kept, the working keys gone.
fn finish(creds: &Credentials) -> Value {
    let mut p = SecretPatch::default();
    if let Some(next) = creds.value(ROOT_NEXT) {
        p.set(secret_key::MONGODB_PASSWORD, next);
    }
    for key in [ROOT_NEXT, REDIS_PREVIOUS, APP_USER_PREVIOUS] {
        if creds.value(key).is_some() {
            p.remove(key);
        }
    }
    p.annotate(ROTATED_ANNOTATION, creds.annotation(ROTATING_ANNOTATION));
    p.annotate(ROTATING_ANNOTATION, None);
    p.annotate(PHASE_ANNOTATION, None);
    p.annotate(ROLLED_OUT_ANNOTATION, None);
    p.body(creds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{mv, validated};
    use k8s_openapi::api::core::v1::Secret;

    fn creds(data: Value, annotations: Value) -> Credentials {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "mv-credentials", "resourceVersion": "42", "annotations": annotations},
            "stringData": data,
        }))
        .unwrap();
        Credentials::from_secret(&secret)
    }

    fn decoded(patch: &Value) -> Value {
        let mut out = patch.clone();
        for (_, v) in out["data"].as_object_mut().unwrap() {
            if let Some(s) = v.as_str() {
                let bytes: ByteString = serde_json::from_value(json!(s)).unwrap();
                *v = json!(String::from_utf8(bytes.0).unwrap());
            }
        }
        out
    }

    fn legacy() -> Value {
        json!({"redis-password": "r0", "redis-url": "redis://:r0@mv-redis.ns.svc:6379/0",
               "mongodb-username": "multivac", "mongodb-password": "root0",
               "mongodb-uri": "mongodb://multivac:root0@mv-mongodb.ns.svc:27017/?authSource=admin"})
    }

    #[test]
    fn the_plan_follows_request_phase_rollout_and_time() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let idle = creds(legacy(), json!({}));
        assert_eq!(plan(None, &idle, true, now), Step::Idle);
        assert_eq!(plan(Some(""), &idle, true, now), Step::Idle);
        assert_eq!(plan(Some("1"), &idle, true, now), Step::Prepare);
        let done = creds(legacy(), json!({ROTATED_ANNOTATION: "1"}));
        assert_eq!(
            plan(Some("1"), &done, true, now),
            Step::Idle,
            "already done"
        );
        assert_eq!(plan(Some("2"), &done, true, now), Step::Prepare);
        let at = |phase: &str, extra: Value| {
            let mut a =
                json!({ROTATED_ANNOTATION: "1", ROTATING_ANNOTATION: "2", PHASE_ANNOTATION: phase});
            a.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            creds(legacy(), a)
        };
        // A newer request waits for the rotation in progress.
        assert_eq!(
            plan(Some("3"), &at("Prepared", json!({})), false, now),
            Step::Switch
        );
        assert_eq!(
            plan(Some("2"), &at("Switched", json!({})), false, now),
            Step::AwaitRollout
        );
        assert_eq!(
            plan(Some("2"), &at("Switched", json!({})), true, now),
            Step::MarkRolledOut
        );
        let rolled = |t: &str| at("RolledOut", json!({ROLLED_OUT_ANNOTATION: t}));
        assert_eq!(
            plan(Some("2"), &rolled("2026-01-01T00:09:30Z"), true, now),
            Step::AwaitDrain(
                Duration::from_secs(35),
                "2026-01-01T00:10:35Z".parse().unwrap()
            )
        );
        assert_eq!(
            plan(Some("2"), &rolled("2026-01-01T00:10:20Z"), true, now),
            Step::AwaitDrain(DRAIN, "2026-01-01T00:11:25Z".parse().unwrap()),
            "a time ahead of the clock waits the whole drain"
        );
        assert_eq!(
            plan(Some("2"), &rolled("2026-01-01T00:08:55Z"), true, now),
            Step::Finish
        );
        assert_eq!(plan(Some("2"), &rolled("garbage"), true, now), Step::Finish);
    }

    #[test]
    fn a_legacy_secret_moves_from_root_to_an_app_user_and_keeps_root() {
        let m = mv(json!({"image": "x"}));
        let v = validated(&m);
        let c = creds(legacy(), json!({}));
        let prepared = decoded(&prepare(&c, &v, "t1"));
        assert_eq!(prepared["metadata"]["resourceVersion"], "42");
        assert_eq!(
            prepared["metadata"]["annotations"],
            json!({ROTATING_ANNOTATION: "t1", PHASE_ANNOTATION: "Prepared"})
        );
        let data = prepared["data"].as_object().unwrap();
        assert_eq!(data[APP_USER_NEXT], "multivac-a");
        for key in [REDIS_NEXT, ROOT_NEXT, APP_PASSWORD_NEXT] {
            let p = data[key].as_str().unwrap();
            assert!(
                p.len() == 32 && p.chars().all(|c| c.is_ascii_alphanumeric()),
                "{key}"
            );
        }
        assert_ne!(data[REDIS_NEXT], data[ROOT_NEXT]);

        let mut values = legacy();
        values.as_object_mut().unwrap().extend(data.clone());
        let c = creds(values.clone(), json!({PHASE_ANNOTATION: "Prepared"}));
        let switched = decoded(&switch(&c, &v));
        let (rn, an) = (
            data[REDIS_NEXT].as_str().unwrap(),
            data[APP_PASSWORD_NEXT].as_str().unwrap(),
        );
        assert_eq!(
            switched["data"],
            json!({
                REDIS_PREVIOUS: "r0",
                "redis-password": rn,
                "redis-url": format!("redis://:{rn}@mv-redis.ns.svc:6379/0"),
                REDIS_NEXT: null,
                APP_USER_PREVIOUS: "multivac",
                "mongodb-app-username": "multivac-a",
                "mongodb-app-password": an,
                "mongodb-uri": format!("mongodb://multivac-a:{an}@mv-mongodb.ns.svc:27017/?authSource=admin"),
                APP_USER_NEXT: null,
                APP_PASSWORD_NEXT: null,
            })
        );
        assert_eq!(
            switched["metadata"]["annotations"],
            json!({PHASE_ANNOTATION: "Switched"})
        );

        let c = creds(
            json!({"mongodb-password": "root0", ROOT_NEXT: "root1", REDIS_PREVIOUS: "r0",
                   APP_USER_PREVIOUS: "multivac", "mongodb-app-username": "multivac-a"}),
            json!({ROTATING_ANNOTATION: "t1", PHASE_ANNOTATION: "RolledOut"}),
        );
        let finished = decoded(&finish(&c));
        assert_eq!(
            finished["data"],
            json!({"mongodb-password": "root1", ROOT_NEXT: null, REDIS_PREVIOUS: null, APP_USER_PREVIOUS: null})
        );
        assert_eq!(
            finished["metadata"]["annotations"],
            json!({ROTATED_ANNOTATION: "t1", ROTATING_ANNOTATION: null, PHASE_ANNOTATION: null, ROLLED_OUT_ANNOTATION: null})
        );
    }

    #[test]
    fn app_users_alternate_and_external_stores_are_left_alone() {
        let m = mv(json!({"image": "x"}));
        let mut values = legacy();
        values["mongodb-app-username"] = json!("multivac-a");
        let prepared = decoded(&prepare(
            &creds(values.clone(), json!({})),
            &validated(&m),
            "t",
        ));
        assert_eq!(prepared["data"][APP_USER_NEXT], "multivac-b");
        values["mongodb-app-username"] = json!("multivac-b");
        let prepared = decoded(&prepare(
            &creds(values.clone(), json!({})),
            &validated(&m),
            "t",
        ));
        assert_eq!(prepared["data"][APP_USER_NEXT], "multivac-a");

        let ext = mv(json!({"image": "x", "mongodb": {"external": {"secretRef": {"name": "m"}}}}));
        let prepared = decoded(&prepare(&creds(values, json!({})), &validated(&ext), "t"));
        let keys: Vec<&String> = prepared["data"].as_object().unwrap().keys().collect();
        assert_eq!(keys, [REDIS_NEXT], "only the managed Redis rotates");
    }

    #[test]
    fn rolled_out_records_the_time() {
        let c = creds(legacy(), json!({PHASE_ANNOTATION: "Switched"}));
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            rolled_out_at(&c, now),
            json!({"metadata": {"resourceVersion": "42", "annotations":
                {PHASE_ANNOTATION: "RolledOut", ROLLED_OUT_ANNOTATION: "2026-01-01T00:00:00Z"}},
                "data": {}})
        );
    }
}
