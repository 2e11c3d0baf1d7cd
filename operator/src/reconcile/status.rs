//! The reconciler's part of `status`: computed (pure) from the live
//! Deployments or from the error that stopped the reconcile, compared with
//! what is already there, and sent only on change. The scaler's fields
//! (`workers.{current,desired,backlog,lastScaleTime}`, `Degraded`) are never
//! part of it, so the two field managers never take each other's fields.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::Value;

use super::apply::{Rollout, is_subset};
use crate::crd::{ComponentStatus, MultiVac, MultiVacStatus, WorkersStatus};

/// Condition types the reconciler owns.
pub(crate) const READY: &str = "Ready";
pub(crate) const PROGRESSING: &str = "Progressing";

/// A rollout as the status counts it.
impl Rollout {
    fn counts(&self) -> ComponentStatus {
        ComponentStatus {
            replicas: self.replicas,
            ready_replicas: self.ready,
        }
    }
}

/// A condition without `lastTransitionTime` (set when it is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    pub(crate) type_: &'static str,
    pub(crate) status: bool,
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// Ready and Progressing from the rollouts.
pub(crate) fn conditions_from_rollouts(rollouts: &[Rollout]) -> Vec<Cond> {
    let waiting: Vec<String> = rollouts
        .iter()
        .filter(|r| !r.done())
        .map(|r| {
            format!(
                "{} ({}/{} available)",
                r.name,
                r.available.min(r.replicas),
                r.replicas
            )
        })
        .collect();
    if waiting.is_empty() {
        vec![
            Cond {
                type_: READY,
                status: true,
                reason: "AllComponentsAvailable".into(),
                message: "server, workers and datastores are available".into(),
            },
            Cond {
                type_: PROGRESSING,
                status: false,
                reason: "RolloutComplete".into(),
                message: "every Deployment runs the current spec".into(),
            },
        ]
    } else {
        let message = format!("waiting for Deployments: {}", waiting.join(", "));
        vec![
            Cond {
                type_: READY,
                status: false,
                reason: "ComponentsNotAvailable".into(),
                message: message.clone(),
            },
            Cond {
                type_: PROGRESSING,
                status: true,
                reason: "RollingOut".into(),
                message,
            },
        ]
    }
}

/// Ready=False with `reason` and `message`, whatever the rollouts say: some
/// children are not as the spec asks (the status says which and why).
pub(crate) fn not_ready(conditions: &mut [Cond], reason: &str, message: &str) {
    for c in conditions.iter_mut().filter(|c| c.type_ == READY) {
        c.status = false;
        c.reason = reason.into();
        c.message = message.into();
    }
}

/// Ready=False and Progressing=True with `reason` and `message`: the pods may
/// be up, but the MultiVac cannot work yet (the app's MongoDB user is missing).
pub(crate) fn waiting(conditions: &mut [Cond], reason: &str, message: &str) {
    for c in conditions.iter_mut() {
        c.status = match c.type_ {
            READY => false,
            PROGRESSING => true,
            _ => continue,
        };
        c.reason = reason.into();
        c.message = message.into();
    }
}

/// Progressing=True while a credentials rotation runs, saying where it is
/// (Ready still tells whether the pods are available).
pub(crate) fn rotating(conds: &mut [Cond], message: &str) {
    for c in conds.iter_mut().filter(|c| c.type_ == PROGRESSING) {
        c.status = true;
        c.reason = "RotatingCredentials".into();
        c.message = message.into();
    }
}

/// The message of the Ready condition the MultiVac has now, if any.
pub(crate) fn ready_message(mv: &MultiVac) -> &str {
    mv.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .map_or("", |c| c.message.as_str())
}

/// Ready=False and Progressing=False for an error the user has to fix.
pub(crate) fn conditions_from_error(reason: &str, message: &str) -> Vec<Cond> {
    vec![
        Cond {
            type_: READY,
            status: false,
            reason: reason.into(),
            message: message.into(),
        },
        Cond {
            type_: PROGRESSING,
            status: false,
            reason: reason.into(),
            message: message.into(),
        },
    ]
}

/// The reconciler's fields of `status`, as sent with server-side apply.
/// `None` rollouts means "unknown" (an error stopped the reconcile): the
/// counts are then kept from the current status, because a field left out of
/// a server-side apply is removed.
pub(crate) fn reconciler_status(
    mv: &MultiVac,
    conds: &[Cond],
    rollouts: Option<&[Rollout]>,
    now: &Time,
) -> MultiVacStatus {
    let current = mv.status.clone().unwrap_or_default();
    let generation = mv.metadata.generation;
    let conditions = conds
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = current
                .conditions
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: c.type_.into(),
                status: status.into(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect();
    let find = |c: &str| rollouts.and_then(|rs| rs.iter().find(|r| r.component == c));
    let counts = |c: &str, cur: &Option<ComponentStatus>| match rollouts {
        Some(_) => find(c).map(Rollout::counts),
        None => cur.clone(),
    };
    let workers_ready = match rollouts {
        Some(_) => find("worker").map(|r| r.ready),
        None => current.workers.as_ref().and_then(|w| w.ready_replicas),
    };
    MultiVacStatus {
        observed_generation: generation,
        conditions,
        server: counts("server", &current.server),
        workers: workers_ready.map(|r| WorkersStatus {
            ready_replicas: Some(r),
            ..Default::default()
        }),
        redis: counts("redis", &current.redis),
        mongodb: counts("mongodb", &current.mongodb),
        service_url: crate::resources::server_url(mv),
    }
}

/// Whether applying `status` would change the live status. Conditions are
/// matched by type (the scaler's `Degraded` may sit beside ours, in any order).
pub(crate) fn changed(mv: &MultiVac, status: &MultiVacStatus) -> bool {
    let json = |s: &MultiVacStatus| serde_json::to_value(s).unwrap_or(Value::Null);
    let live = mv.status.clone().unwrap_or_default();
    let conditions_same = status.conditions.iter().all(|want| {
        live.conditions
            .iter()
            .find(|l| l.type_ == want.type_)
            .is_some_and(|l| is_subset(&json_condition(want), &json_condition(l)))
    });
    let without_conditions = |s: &MultiVacStatus| {
        json(&MultiVacStatus {
            conditions: vec![],
            ..s.clone()
        })
    };
    !(conditions_same && is_subset(&without_conditions(status), &without_conditions(&live)))
}

fn json_condition(c: &Condition) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::mv;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn deployment(replicas: i64, available: i64, observed: i64) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "mv-server", "generation": 2,
                "labels": {"app.kubernetes.io/component": "server"}},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": replicas,
                       "readyReplicas": available, "availableReplicas": available}}))
        .unwrap()
    }

    fn at(time: &str) -> Time {
        Time(time.parse().unwrap())
    }

    fn json_of(s: &MultiVacStatus) -> Value {
        serde_json::to_value(s).unwrap()
    }

    #[test]
    fn rollout_is_done_only_when_current_and_available() {
        assert!(Rollout::from_live(&deployment(2, 2, 2)).done());
        assert!(!Rollout::from_live(&deployment(2, 1, 2)).done());
        assert!(!Rollout::from_live(&deployment(2, 2, 1)).done());
        assert!(Rollout::from_live(&deployment(0, 0, 2)).done());
        assert_eq!(Rollout::from_live(&deployment(1, 1, 2)).component, "server");
    }

    #[test]
    fn ready_when_every_rollout_is_done_with_a_message_otherwise() {
        let done = Rollout::from_live(&deployment(1, 1, 2));
        let mut waiting = Rollout::from_live(&deployment(1, 0, 2));
        waiting.name = "mv-redis".into();
        let c = conditions_from_rollouts(std::slice::from_ref(&done));
        assert!(c[0].status && c[0].type_ == READY && !c[1].status);
        let c = conditions_from_rollouts(&[done, waiting]);
        assert!(!c[0].status);
        assert_eq!(
            c[0].message,
            "waiting for Deployments: mv-redis (0/1 available)"
        );
        assert!(c[1].status && c[1].type_ == PROGRESSING);
    }

    #[test]
    fn desired_status_keeps_transition_times_and_detects_change() {
        let mut m = mv(json!({"image": "x"}));
        let rollouts = [Rollout::from_live(&deployment(1, 1, 2))];
        let conds = conditions_from_rollouts(&rollouts);
        let first = reconciler_status(&m, &conds, Some(&rollouts), &at("2026-01-01T00:00:00Z"));
        assert_eq!(
            json_of(&first),
            json!({
                "observedGeneration": 1,
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "AllComponentsAvailable",
                     "message": "server, workers and datastores are available", "observedGeneration": 1,
                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Progressing", "status": "False", "reason": "RolloutComplete",
                     "message": "every Deployment runs the current spec", "observedGeneration": 1,
                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                ],
                "server": {"replicas": 1, "readyReplicas": 1},
                "serviceUrl": "http://mv-server.ns.svc",
            })
        );
        assert!(changed(&m, &first));
        m.status = Some(first.clone());
        let again = reconciler_status(&m, &conds, Some(&rollouts), &at("2026-02-02T00:00:00Z"));
        assert_eq!(again, first, "same state keeps the transition time");
        assert!(!changed(&m, &again));
        // The scaler's condition and fields beside ours change nothing.
        let mut with_scaler = json_of(&first);
        with_scaler["conditions"].as_array_mut().unwrap().insert(0, json!({"type": "Degraded",
            "status": "False", "reason": "BacklogRead", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}));
        with_scaler["workers"] = json!({"current": 3, "backlog": 10});
        m.status = Some(serde_json::from_value(with_scaler).unwrap());
        let beside_scaler =
            reconciler_status(&m, &conds, Some(&rollouts), &at("2026-03-03T00:00:00Z"));
        assert!(!changed(&m, &beside_scaler));
        let sent = json_of(&beside_scaler);
        assert!(
            sent["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["type"] != "Degraded"),
            "the scaler's condition is never sent: {sent}"
        );
        assert!(sent.get("workers").is_none(), "{sent}");
        let err = json_of(&reconciler_status(
            &m,
            &conditions_from_error("InvalidSpec", "bad"),
            None,
            &at("2026-02-02T00:00:00Z"),
        ));
        assert!(changed(&m, &serde_json::from_value(err.clone()).unwrap()));
        assert_eq!(
            err["server"],
            json!({"replicas": 1, "readyReplicas": 1}),
            "kept while unknown"
        );
        assert_eq!(
            err["conditions"][0]["lastTransitionTime"],
            "2026-02-02T00:00:00Z"
        );
    }
}
