//! The one error type of the operator. Its kind decides what the controller
//! does next (see [`Error::is_permanent`]): wait for the user to fix the
//! MultiVac, or retry with backoff.

use std::time::Duration;

/// Everything that can go wrong while reconciling or running the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec asks for something the operator cannot build; the message says what to change.
    #[error("invalid MultiVac spec: {0}")]
    InvalidSpec(String),

    /// The MultiVac names no app image and the operator has no default.
    #[error(
        "spec.image is not set and this operator has no default app image: set spec.image to the multivac app image, or give the operator one (--default-app-image / MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE; the chart sets it from its value appImage)"
    )]
    NoAppImage,

    /// A Secret named in the spec (or one of its keys) does not exist yet.
    #[error(
        "secret {name:?} (key {key:?}) referenced by the MultiVac is missing: create it in namespace {namespace:?}"
    )]
    MissingSecret {
        namespace: String,
        name: String,
        key: String,
    },

    /// The credentials Secret is gone while data volumes it protects exist:
    /// new passwords would lock the stores out of their data.
    #[error(
        "the credentials Secret {namespace}/{secret} is missing, but data volumes exist whose stores were set up with its passwords (PersistentVolumeClaims {}); the operator makes no new passwords over that data (MongoDB keeps the users it was set up with). Restore the Secret from your backup (`kubectl create -f` the copy saved as the README's Credentials section shows), or, to start with empty stores, delete those PersistentVolumeClaims and the store Deployments whose pods hold them",
        volumes.join(", ")
    )]
    CredentialsMissing {
        namespace: String,
        secret: String,
        volumes: Vec<String>,
    },

    /// The API server refused or failed a request; usually transient.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    /// A built object could not be (de)serialized: a bug in a builder, reported instead of a panic.
    #[error("serialization error: {0}")]
    Serialization(#[from] serde_json::Error),

    /// The object lacks metadata the API server always sets (name, namespace, uid).
    #[error("MultiVac is missing {0}")]
    MissingMetadata(&'static str),

    /// Leader election failed (the Lease could not be read or written).
    #[error("leader election: {0}")]
    Leader(String),
}

/// Result alias used across the operator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Permanent errors only go away when the user edits the MultiVac (the
    /// watch brings that in at once), or creates a Secret or deletes data
    /// volumes (not watched: `error_policy` re-checks every 30 s), so
    /// retrying fast would only spam the API server.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::InvalidSpec(_)
                | Self::NoAppImage
                | Self::MissingSecret { .. }
                | Self::CredentialsMissing { .. }
        )
    }

    /// Short label for metrics and event reasons.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "invalid_spec",
            Self::NoAppImage => "no_app_image",
            Self::MissingSecret { .. } => "missing_secret",
            Self::CredentialsMissing { .. } => "credentials_missing",
            Self::Kube(_) => "kube",
            Self::Serialization(_) => "serialization",
            Self::MissingMetadata(_) => "missing_metadata",
            Self::Leader(_) => "leader",
        }
    }

    /// How long to wait before the next attempt after this error.
    pub(crate) fn requeue_after(&self, failures: u32) -> Duration {
        if self.is_permanent() {
            // An edit of the MultiVac triggers a reconcile sooner.
            Duration::from_secs(300)
        } else {
            // 1 s, 2 s, 4 s ... capped at 5 min.
            Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_wait_and_transient_ones_back_off() {
        let invalid = Error::InvalidSpec("x".into());
        assert!(invalid.is_permanent());
        assert_eq!(invalid.requeue_after(0), Duration::from_secs(300));
        let transient = Error::MissingMetadata("uid");
        assert!(!transient.is_permanent());
        assert_eq!(transient.requeue_after(0), Duration::from_secs(1));
        assert_eq!(transient.requeue_after(3), Duration::from_secs(8));
        assert_eq!(transient.requeue_after(30), Duration::from_secs(256));
    }
}
