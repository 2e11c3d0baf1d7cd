//! The reconciler's part of `status`: computed (pure) from the live
//! Deployments, compared with what is already there, patched only on change.

use serde_json::{Value, json};

use crate::crd::{ComponentStatus, MultiVac};

/// Condition types the reconciler owns.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";

/// How far one Deployment got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// `server`, `worker`, `redis` or `mongodb`.
    pub component: String,
    pub name: String,
    /// `spec.replicas` (the scaler's for workers).
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    /// The Deployment controller saw the current spec and every pod is of it.
    pub up_to_date: bool,
}

impl Rollout {
    /// Reads a live Deployment (as JSON).
    pub fn from_live(component: &str, live: &Value) -> Self {
        let int = |v: &Value| v.as_i64().unwrap_or(0) as i32;
        let spec_replicas = live["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
        let status = &live["status"];
        let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
        let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
        Self {
            component: component.into(),
            name: live["metadata"]["name"].as_str().unwrap_or_default().into(),
            replicas: spec_replicas,
            ready: int(&status["readyReplicas"]),
            available: int(&status["availableReplicas"]),
            up_to_date: observed >= generation
                && int(&status["updatedReplicas"]) >= spec_replicas
                && int(&status["replicas"]) <= spec_replicas,
        }
    }

    /// Every wanted pod runs the current template and is available.
    pub fn done(&self) -> bool {
        self.up_to_date && self.available >= self.replicas
    }

    fn counts(&self) -> ComponentStatus {
        ComponentStatus {
            replicas: self.replicas,
            ready_replicas: self.ready,
        }
    }
}

/// A condition without `lastTransitionTime` (set when it is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// Ready and Progressing from the rollouts.
pub fn conditions_from_rollouts(rollouts: &[Rollout]) -> Vec<Cond> {
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

/// Ready=False and Progressing=False for an error the user has to fix.
pub fn conditions_from_error(reason: &str, message: &str) -> Vec<Cond> {
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
pub fn desired(mv: &MultiVac, conds: &[Cond], rollouts: Option<&[Rollout]>, now: &str) -> Value {
    let current = mv.status.clone().unwrap_or_default();
    let generation = mv.metadata.generation;
    let conditions: Vec<Value> = conds
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let previous = current.conditions.iter().find(|p| p.type_ == c.type_);
            let since = match previous {
                Some(p) if p.status == status => {
                    serde_json::to_value(&p.last_transition_time).unwrap_or_else(|_| json!(now))
                }
                _ => json!(now),
            };
            json!({
                "type": c.type_, "status": status, "reason": c.reason, "message": c.message,
                "observedGeneration": generation, "lastTransitionTime": since,
            })
        })
        .collect();
    let mut status = json!({"conditions": conditions});
    if let Some(g) = generation {
        status["observedGeneration"] = json!(g);
    }
    let find = |c: &str| rollouts.and_then(|rs| rs.iter().find(|r| r.component == c));
    let keep = |c: &str, cur: &Option<ComponentStatus>| match (rollouts, find(c)) {
        (Some(_), Some(r)) => Some(r.counts()),
        (Some(_), None) => None,
        (None, _) => cur.clone(),
    };
    if let Some(s) = keep("server", &current.server) {
        status["server"] = json!(s);
    }
    if let Some(s) = keep("redis", &current.redis) {
        status["redis"] = json!(s);
    }
    if let Some(s) = keep("mongodb", &current.mongodb) {
        status["mongodb"] = json!(s);
    }
    let worker_ready = match rollouts {
        Some(_) => find("worker").map(|r| r.ready),
        None => current.workers.as_ref().and_then(|w| w.ready_replicas),
    };
    if let Some(r) = worker_ready {
        status["workers"] = json!({"readyReplicas": r});
    }
    if let Some(url) = crate::resources::service::server_url(mv) {
        status["serviceUrl"] = json!(url);
    }
    status
}

/// Whether applying `desired` would change the live status. Conditions are
/// matched by type (the scaler's `Degraded` may sit beside ours, in any order).
pub fn changed(mv: &MultiVac, desired: &Value) -> bool {
    use crate::reconcile::apply::is_subset;
    let mut live =
        serde_json::to_value(mv.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let live_conds = live
        .as_object_mut()
        .and_then(|o| o.remove("conditions"))
        .unwrap_or(Value::Null);
    let mut want = desired.clone();
    let want_conds = want
        .as_object_mut()
        .and_then(|o| o.remove("conditions"))
        .unwrap_or(Value::Null);
    let conds_same = want_conds.as_array().into_iter().flatten().all(|w| {
        live_conds
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["type"] == w["type"])
            .is_some_and(|l| is_subset(w, l))
    });
    !(conds_same && is_subset(&want, &live))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::mv;

    fn deployment(replicas: i64, available: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "mv-server", "generation": 2}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": replicas,
                       "readyReplicas": available, "availableReplicas": available}})
    }

    #[test]
    fn rollout_is_done_only_when_current_and_available() {
        assert!(Rollout::from_live("server", &deployment(2, 2, 2)).done());
        assert!(!Rollout::from_live("server", &deployment(2, 1, 2)).done());
        assert!(!Rollout::from_live("server", &deployment(2, 2, 1)).done());
        assert!(Rollout::from_live("worker", &deployment(0, 0, 2)).done());
    }

    #[test]
    fn ready_when_every_rollout_is_done_with_a_message_otherwise() {
        let done = Rollout::from_live("server", &deployment(1, 1, 2));
        let mut waiting = Rollout::from_live("redis", &deployment(1, 0, 2));
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
        let rollouts = [Rollout::from_live("server", &deployment(1, 1, 2))];
        let conds = conditions_from_rollouts(&rollouts);
        let first = desired(&m, &conds, Some(&rollouts), "2026-01-01T00:00:00Z");
        assert_eq!(
            first,
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
        m.status = Some(serde_json::from_value(first.clone()).unwrap());
        let again = desired(&m, &conds, Some(&rollouts), "2026-02-02T00:00:00Z");
        assert_eq!(again, first, "same state keeps the transition time");
        assert!(!changed(&m, &again));
        // The scaler's condition and fields beside ours change nothing.
        let mut with_scaler = first.clone();
        with_scaler["conditions"].as_array_mut().unwrap().insert(0, json!({"type": "Degraded",
            "status": "False", "reason": "BacklogRead", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}));
        with_scaler["workers"] = json!({"current": 3, "backlog": 10});
        m.status = Some(serde_json::from_value(with_scaler).unwrap());
        assert!(!changed(
            &m,
            &desired(&m, &conds, Some(&rollouts), "2026-03-03T00:00:00Z")
        ));
        let err = desired(
            &m,
            &conditions_from_error("InvalidSpec", "bad"),
            None,
            "2026-02-02T00:00:00Z",
        );
        assert!(changed(&m, &err));
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
