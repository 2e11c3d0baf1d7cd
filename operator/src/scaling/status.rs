//! Pure builders for what the scaler writes: the worker Deployment's
//! `spec.replicas` and its part of the MultiVac status. Both are server-side
//! apply bodies holding only the scaler's fields, so the reconciler's and a
//! user's fields are never touched.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use crate::crd::{MultiVacStatus, WorkersStatus};

/// The condition type the scaler owns.
pub(crate) const DEGRADED: &str = "Degraded";
/// `Degraded=False` reason: the backlog was read.
pub(crate) const REASON_OK: &str = "BacklogRead";
/// `Degraded=True` reason: Redis did not answer (or refused our credentials).
pub(crate) const REASON_REDIS: &str = "RedisUnreachable";
/// `Degraded=True` reason: the Secret with the Redis URL is missing or incomplete.
pub(crate) const REASON_SECRET: &str = "RedisUrlMissing";

/// The scaler's view of one MultiVac, compared with what the API server
/// holds before anything is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScalerStatus {
    pub(crate) current: i32,
    pub(crate) desired: i32,
    /// Unknown until the first successful read.
    pub(crate) backlog: Option<i64>,
    pub(crate) last_scale_time: Option<Time>,
    pub(crate) degraded: DegradedState,
}

/// The `Degraded` condition without its transition time (which only moves
/// when `status` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DegradedState {
    pub(crate) status: bool,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl DegradedState {
    /// Everything is fine.
    pub(crate) fn ok() -> Self {
        Self {
            status: false,
            reason: REASON_OK.into(),
            message: "the backlog of multivac:data is read on every poll".into(),
        }
    }
}

impl ScalerStatus {
    /// Reads the scaler's fields back from a MultiVac status, for comparison.
    pub(crate) fn from_status(status: Option<&MultiVacStatus>) -> Option<Self> {
        let status = status?;
        let workers = status.workers.as_ref()?;
        let cond = status.conditions.iter().find(|c| c.type_ == DEGRADED)?;
        Some(Self {
            current: workers.current?,
            desired: workers.desired?,
            backlog: workers.backlog,
            last_scale_time: workers.last_scale_time.clone(),
            degraded: DegradedState {
                status: cond.status == "True",
                reason: cond.reason.clone(),
                message: cond.message.clone(),
            },
        })
    }
}

/// The `Degraded` condition to write: `since` is kept when the status did not
/// flip (from the stored condition), so `lastTransitionTime` means what it says.
pub(crate) fn degraded_condition(state: &DegradedState, since: Time) -> Condition {
    Condition {
        type_: DEGRADED.into(),
        status: if state.status { "True" } else { "False" }.into(),
        reason: state.reason.clone(),
        message: state.message.clone(),
        last_transition_time: since,
        observed_generation: None,
    }
}

/// The status apply body (for `patch_status` with the scaler's field manager).
pub(crate) fn status_patch(s: &ScalerStatus, condition: &Condition) -> Value {
    MultiVacStatus {
        workers: Some(WorkersStatus {
            current: Some(s.current),
            desired: Some(s.desired),
            backlog: s.backlog,
            last_scale_time: s.last_scale_time.clone(),
            ready_replicas: None,
        }),
        conditions: vec![condition.clone()],
        ..Default::default()
    }
    .apply_body()
}

/// The replicas apply body for the worker Deployment: only `spec.replicas`.
pub(crate) fn replicas_patch(name: &str, namespace: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "replicas": replicas },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WorkersStatus;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn replicas_patch_holds_only_replicas() {
        assert_eq!(
            replicas_patch("a-worker", "ns", 3),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "a-worker", "namespace": "ns"},
                "spec": {"replicas": 3}
            })
        );
    }

    #[test]
    fn status_patch_holds_only_the_scaler_fields() {
        let s = ScalerStatus {
            current: 2,
            desired: 4,
            backlog: Some(350),
            last_scale_time: Some(t(1_700_000_000)),
            degraded: DegradedState::ok(),
        };
        let cond = degraded_condition(&s.degraded, t(1_700_000_100));
        assert_eq!(
            status_patch(&s, &cond),
            json!({
                "apiVersion": "multivac.io/v1alpha1",
                "kind": "MultiVac",
                "status": {
                    "workers": {
                        "current": 2, "desired": 4, "backlog": 350,
                        "lastScaleTime": "2023-11-14T22:13:20Z"
                    },
                    "conditions": [{
                        "type": "Degraded", "status": "False", "reason": "BacklogRead",
                        "message": "the backlog of multivac:data is read on every poll",
                        "lastTransitionTime": "2023-11-14T22:15:00Z"
                    }]
                }
            })
        );
        // Before the first read and the first scale: neither field is sent.
        let fresh = ScalerStatus {
            backlog: None,
            last_scale_time: None,
            ..s
        };
        let body = status_patch(&fresh, &cond);
        assert_eq!(
            body["status"]["workers"],
            json!({"current": 2, "desired": 4})
        );
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let s = ScalerStatus {
            current: 1,
            desired: 1,
            backlog: Some(0),
            last_scale_time: None,
            degraded: DegradedState {
                status: true,
                reason: REASON_REDIS.into(),
                message: "down".into(),
            },
        };
        let cond = degraded_condition(&s.degraded, t(5));
        let stored: MultiVacStatus =
            serde_json::from_value(status_patch(&s, &cond)["status"].clone()).unwrap();
        assert_eq!(ScalerStatus::from_status(Some(&stored)), Some(s));
        // The reconciler's fields beside ours do not matter; a missing
        // Degraded condition means the scaler never wrote.
        let theirs = MultiVacStatus {
            workers: Some(WorkersStatus {
                ready_replicas: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(ScalerStatus::from_status(Some(&theirs)), None);
        assert_eq!(ScalerStatus::from_status(None), None);
    }
}
