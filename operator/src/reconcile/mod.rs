//! One reconciliation of a MultiVac, in stages with typed hand-offs:
//!
//! ```text
//! MultiVac --dereference--> Dereferenced --validate--> Validated --build--> Children
//!          (reads Secrets)                 (pure)                  (pure, `resources`)
//! Children --apply--> Applied (per child: Created/Updated/Unchanged/Removed, rollouts)
//! Applied  --status--> MultiVacStatus (server-side applied only on change)
//! ```

mod apply;
mod cluster;
mod dereference;
mod quantity;
mod status;
#[cfg(test)]
mod tests;
mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::context::Context;
use crate::crd::{MultiVac, MultiVacStatus, now_seconds};
use crate::error::{Error, Result};
use crate::resources::{self, Passwords};
use crate::telemetry::{ErrorLabels, ResultLabels};
use apply::{Applied, Change};
use cluster::Cluster;

#[cfg(test)]
pub(crate) use dereference::{Dereferenced, SecretKey, referenced};
pub(crate) use validate::{Store, Validated, validate};

/// How often a healthy MultiVac is re-checked even without watch events
/// (drift the watches could miss); reads only.
const RECHECK_INTERVAL: Duration = Duration::from_secs(300);
/// How often a MultiVac waiting for a referenced Secret is re-checked: the
/// operator does not watch the user's Secrets, so their creation brings no event.
const MISSING_SECRET_RECHECK: Duration = Duration::from_secs(30);

/// Entry point for the controller: reconciles, then records metrics, events
/// and, for an error only the user can fix, the status.
#[instrument(skip_all, fields(
    namespace = mv.metadata.namespace.as_deref().unwrap_or_default(),
    name = mv.metadata.name.as_deref().unwrap_or_default(),
    generation = mv.metadata.generation,
))]
pub(crate) async fn reconcile(mv: Arc<MultiVac>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&mv, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => succeeded(&mv, &ctx),
        Err(e) => failed(&mv, &ctx, e).await,
    }
    result
}

/// Errors only the user can fix wait for them (the watch on the MultiVac
/// brings a fix in at once; a missing Secret is re-checked every 30 s);
/// the others back off exponentially.
pub(crate) fn error_policy(mv: Arc<MultiVac>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::MissingSecret { .. } = error {
        return Action::requeue(MISSING_SECRET_RECHECK);
    }
    let failures = {
        let mut map = ctx.failures.lock().expect("failures lock");
        let n = map.entry(object_key(&mv)).or_insert(0);
        *n += 1;
        *n - 1
    };
    Action::requeue(error.requeue_after(failures))
}

async fn reconcile_inner(mv: &MultiVac, ctx: &Context) -> Result<Action> {
    if mv.meta().deletion_timestamp.is_some() {
        // Garbage collection removes the children through their ownerReferences.
        return Ok(Action::await_change());
    }
    let namespace = mv
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let cluster = Cluster::new(ctx, &namespace);
    let read = dereference::dereference(&cluster, mv).await?;
    let valid = validate(mv, &read)?;
    let children = resources::build(&valid, &ctx.operator_namespace, Passwords::generate)?;
    let applied = apply::apply(&cluster, &children, &valid.owner.uid).await;
    publish_changes(ctx, mv, &applied).await;
    let rollouts = applied.into_rollouts()?;
    let conditions = status::conditions_from_rollouts(&rollouts);
    let status = status::reconciler_status(mv, &conditions, Some(&rollouts), &now_seconds());
    patch_status(&cluster, mv, &status).await?;
    Ok(Action::requeue(RECHECK_INTERVAL))
}

/// `namespace/name`: the key of the backoff's failure count.
fn object_key(mv: &MultiVac) -> String {
    format!("{}/{}", mv.namespace().unwrap_or_default(), mv.name_any())
}

fn succeeded(mv: &MultiVac, ctx: &Context) {
    ctx.metrics
        .reconciliations
        .get_or_create(&ResultLabels { result: "ok" })
        .inc();
    ctx.failures
        .lock()
        .expect("failures lock")
        .remove(&object_key(mv));
}

async fn failed(mv: &MultiVac, ctx: &Context, e: &Error) {
    ctx.metrics
        .reconciliations
        .get_or_create(&ResultLabels { result: "error" })
        .inc();
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabels {
            error: e.metric_label(),
        })
        .inc();
    warn!(error = %e, "reconcile failed");
    if e.is_permanent() {
        report_permanent(mv, ctx, e).await;
    }
    publish(
        ctx,
        mv,
        EventType::Warning,
        "ReconcileFailed",
        "Reconcile",
        e.to_string(),
        None,
    )
    .await;
}

/// A log line and an Event for every child write.
async fn publish_changes(ctx: &Context, mv: &MultiVac, applied: &Applied) {
    for (child, change) in applied.changes() {
        let reason = match change {
            Change::Created => "Created",
            Change::Updated => "Updated",
            Change::Removed => "Deleted",
            Change::Unchanged => continue,
        };
        info!(%child, "{reason}");
        let note = format!("{reason} {child}");
        // The child as the related object: the recorder folds Events with
        // the same reason and related object into one series (keeping the
        // first note), so without it every child's Event would count as
        // the first one's.
        let related = child.object_ref(&mv.namespace().unwrap_or_default());
        publish(
            ctx,
            mv,
            EventType::Normal,
            reason,
            "Apply",
            note,
            Some(related),
        )
        .await;
    }
}

/// Server-side applies the reconciler's status fields if they changed.
async fn patch_status(cluster: &Cluster<'_>, mv: &MultiVac, status: &MultiVacStatus) -> Result<()> {
    if !status::changed(mv, status) {
        return Ok(());
    }
    cluster.apply_status(mv, &status.apply_body()).await
}

/// Ready=False with the reason and what to fix, for errors only the user can fix.
async fn report_permanent(mv: &MultiVac, ctx: &Context, e: &Error) {
    let reason = match e {
        Error::MissingSecret { .. } => "MissingSecret",
        _ => "InvalidSpec",
    };
    let conditions = status::conditions_from_error(reason, &e.to_string());
    let status = status::reconciler_status(mv, &conditions, None, &now_seconds());
    let namespace = mv.namespace().unwrap_or_default();
    if let Err(err) = patch_status(&Cluster::new(ctx, &namespace), mv, &status).await {
        warn!(error = %err, "could not report the error in status");
    }
}

async fn publish(
    ctx: &Context,
    mv: &MultiVac,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: related,
    };
    if let Err(e) = ctx.recorder.publish(&event, &mv.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}
