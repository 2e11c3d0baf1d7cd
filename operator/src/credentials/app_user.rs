//! The app's own MongoDB user, made by the operator once the managed MongoDB
//! answers. A first-start script cannot do it: only the official `mongo`
//! image runs one, and only on an empty data directory, so another image
//! (FerretDB), a data directory from before app users or a restored Secret
//! would leave the app with a user MongoDB does not have.
//!
//! Idempotent: `usersInfo` first, and `createUser` only for a user MongoDB
//! lacks, as the rotation creates its next user (`readWrite` on the app's
//! database; without roles where the server has none, FerretDB). Until the
//! user exists the MultiVac is not Ready: the server answers `GET /multivac`
//! with 503 and the workers leave the data in Redis, retrying.

use std::time::Duration;

use multivac_contract::secret_key;

use super::rotation::{StepError, Stores, within_budget};
use super::{Credentials, ROOT_USERNAME};
use crate::context::Context;
use crate::validated::{Store, Validated};

/// How soon a missing app user is tried again.
pub(crate) const APP_USER_RETRY: Duration = Duration::from_secs(10);

/// What the app's MongoDB user means for the reconcile.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AppUser {
    /// Nothing to wait for: it exists, there is none to make (an external
    /// MongoDB, a Secret from before app users, which uses the root user),
    /// or MongoDB is not available yet (its rollout keeps Ready false).
    Settled,
    /// Created now: the note of an Event.
    Created(String),
    /// Not there yet, and why: the MultiVac is not Ready.
    Missing(String),
}

/// Makes sure MongoDB has the app user the credentials Secret names.
/// `mongodb_available`: the managed MongoDB's Deployment has its pod ready.
/// A user once seen is not looked up again while this MultiVac, this user
/// and MongoDB's availability stay the same (a new pod may have a new data
/// directory), so a settled MultiVac costs MongoDB nothing.
pub(crate) async fn ensure_app_user(
    ctx: &Context,
    mv: &Validated<'_>,
    creds: &Credentials,
    mongodb_available: bool,
) -> AppUser {
    let Some(user) = app_user(mv, creds) else {
        return AppUser::Settled;
    };
    let key = format!("{}/{}", mv.namespace, mv.name);
    let seen = format!("{}/{user}", mv.owner.uid);
    let checked = || ctx.app_users_seen.lock().expect("app users lock");
    if !mongodb_available {
        checked().remove(&key);
        return AppUser::Settled;
    }
    if checked().get(&key) == Some(&seen) {
        return AppUser::Settled;
    }
    let database = &mv.spec.mongodb.database;
    let missing = |why: String| {
        AppUser::Missing(format!(
            "the app's MongoDB user {user} does not exist yet: {why}; retrying every {}s (meanwhile GET /multivac answers 503 and the workers keep the data in Redis)",
            APP_USER_RETRY.as_secs()
        ))
    };
    let Some(password) = creds.value(secret_key::MONGODB_APP_PASSWORD) else {
        return missing(format!(
            "the Secret {} has no key {}: restore it from its backup",
            creds.name,
            secret_key::MONGODB_APP_PASSWORD
        ));
    };
    let stores = Stores { ctx, mv, creds };
    match within_budget(create_if_missing(&stores, user, password, database)).await {
        Ok(created) => {
            checked().insert(key, seen);
            match created {
                true => AppUser::Created(format!(
                    "created the app's MongoDB user {user} (readWrite on {database})"
                )),
                false => AppUser::Settled,
            }
        }
        Err(e) => missing(e.to_string()),
    }
}

/// The app user to make: the Secret's, unless MongoDB is external or the
/// Secret predates app users (the app then is the root user, which the
/// image's first start creates).
fn app_user<'a>(mv: &Validated, creds: &'a Credentials) -> Option<&'a str> {
    let managed = matches!(mv.mongodb, Store::Managed(_));
    let user = creds.value(secret_key::MONGODB_APP_USERNAME)?;
    let root = creds
        .value(secret_key::MONGODB_USERNAME)
        .unwrap_or(ROOT_USERNAME);
    (managed && user != root).then_some(user)
}

/// Whether `user` had to be created.
async fn create_if_missing(
    stores: &Stores<'_>,
    user: &str,
    password: &str,
    database: &str,
) -> Result<bool, StepError> {
    let mongodb = stores.mongodb().await?;
    if mongodb.has_user(user).await? {
        return Ok(false);
    }
    stores.fence("MongoDB createUser")?;
    mongodb.ensure_user(user, password, database).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{mv, validated};
    use k8s_openapi::api::core::v1::Secret;
    use serde_json::{Value, json};

    fn creds(data: Value) -> Credentials {
        let secret: Secret = serde_json::from_value(
            json!({"metadata": {"name": "mv-credentials"}, "stringData": data}),
        )
        .unwrap();
        Credentials::from_secret(&secret)
    }

    #[test]
    fn only_a_managed_mongodb_with_an_app_user_of_its_own_has_one_to_make() {
        let managed = mv(json!({"image": "x"}));
        let external =
            mv(json!({"image": "x", "mongodb": {"external": {"secretRef": {"name": "m"}}}}));
        let new =
            creds(json!({"mongodb-username": "multivac", "mongodb-app-username": "multivac-b"}));
        let legacy = creds(json!({"mongodb-username": "multivac"}));
        let root_as_app =
            creds(json!({"mongodb-username": "multivac", "mongodb-app-username": "multivac"}));
        assert_eq!(app_user(&validated(&managed), &new), Some("multivac-b"));
        assert_eq!(app_user(&validated(&external), &new), None);
        assert_eq!(app_user(&validated(&managed), &legacy), None);
        assert_eq!(app_user(&validated(&managed), &root_as_app), None);
    }
}
