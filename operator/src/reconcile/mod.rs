//! One reconciliation of a MultiVac, in stages: dereference (read referenced
//! Secrets) -> validate (pure) -> build (pure, `resources`) -> apply (SSA,
//! writes only on change) -> status (patched only on change).

pub mod apply;
pub mod dereference;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::context::Context;
use crate::crd::{FIELD_MANAGER, MultiVac};
use crate::error::{Error, Result};
use crate::resources::{self, secret};
use crate::telemetry::{ErrorLabels, ResultLabels};
use apply::Outcome;
use status::Rollout;

/// How often a healthy MultiVac is re-checked even without watch events
/// (drift the watches could miss); reads only.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Entry point for the controller: reconciles and records metrics and events.
pub async fn reconcile(mv: Arc<MultiVac>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&mv, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let key = object_key(&mv);
    match &result {
        Ok(_) => {
            ctx.metrics
                .reconciliations
                .get_or_create(&ResultLabels { result: "ok" })
                .inc();
            ctx.failures.lock().expect("failures lock").remove(&key);
        }
        Err(e) => {
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
            warn!(multivac = %key, error = %e, "reconcile failed");
            if e.is_permanent() {
                report_permanent(&mv, &ctx, e).await;
            }
            publish(
                &ctx,
                &mv,
                EventType::Warning,
                "ReconcileFailed",
                "Reconcile",
                e.to_string(),
            )
            .await;
        }
    }
    result
}

/// Permanent errors wait for the user (the watch on the MultiVac brings the
/// fix in at once; a missing Secret is re-checked every 30 s); transient
/// ones back off exponentially.
pub fn error_policy(mv: Arc<MultiVac>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::MissingSecret { .. } = error {
        return Action::requeue(Duration::from_secs(30));
    }
    let key = object_key(&mv);
    let failures = {
        let mut map = ctx.failures.lock().expect("failures lock");
        let n = map.entry(key).or_insert(0);
        *n += 1;
        *n - 1
    };
    Action::requeue(error.requeue_after(failures))
}

fn object_key(mv: &MultiVac) -> String {
    format!("{}/{}", mv.namespace().unwrap_or_default(), mv.name_any())
}

async fn reconcile_inner(mv: &MultiVac, ctx: &Context) -> Result<Action> {
    let ns = mv
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let uid = mv.uid().ok_or(Error::MissingMetadata("metadata.uid"))?;
    if mv.meta().deletion_timestamp.is_some() {
        // Garbage collection removes the children through their ownerReferences.
        return Ok(Action::await_change());
    }

    // dereference
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    dereference::check_secrets(&secrets, &ns, mv).await?;
    // validate
    validate::validate(mv)?;
    // build
    let plan = resources::build(mv, &ctx.operator_namespace)?;

    // apply: the generated Secret first (the pods need it), once.
    if resources::needs_credentials(mv) {
        let created = apply::create_if_absent(
            ctx,
            &ns,
            &kube::core::ApiResource::erase::<Secret>(&()),
            &mv.credentials_name(),
            || {
                secret::build(
                    mv,
                    &secret::generate_password(),
                    &secret::generate_password(),
                )
            },
        )
        .await?;
        if created {
            info!(multivac = %object_key(mv), "generated credentials Secret");
            publish(
                ctx,
                mv,
                EventType::Normal,
                "Created",
                "Apply",
                format!("Created Secret/{}", mv.credentials_name()),
            )
            .await;
        }
    }
    let mut rollouts = vec![];
    for desired in &plan.apply {
        let (outcome, live) = apply::ensure(ctx, &ns, desired).await?;
        match outcome {
            Outcome::Unchanged => {}
            Outcome::Created => {
                info!(multivac = %object_key(mv), child = %desired.describe(), "created");
                publish(
                    ctx,
                    mv,
                    EventType::Normal,
                    "Created",
                    "Apply",
                    format!("Created {}", desired.describe()),
                )
                .await;
            }
            Outcome::Updated => {
                info!(multivac = %object_key(mv), child = %desired.describe(), "updated");
                publish(
                    ctx,
                    mv,
                    EventType::Normal,
                    "Updated",
                    "Apply",
                    format!("Updated {}", desired.describe()),
                )
                .await;
            }
        }
        if desired.resource.kind == "Deployment" {
            let component = live
                .labels()
                .get("app.kubernetes.io/component")
                .cloned()
                .unwrap_or_default();
            rollouts.push(Rollout::from_live(
                &component,
                &serde_json::to_value(&live)?,
            ));
        }
    }
    for unwanted in &plan.remove {
        if apply::remove_if_owned(ctx, &ns, &unwanted.resource, &unwanted.name, &uid).await? {
            let what = format!("{}/{}", unwanted.resource.kind, unwanted.name);
            info!(multivac = %object_key(mv), child = %what, "deleted");
            publish(
                ctx,
                mv,
                EventType::Normal,
                "Deleted",
                "Apply",
                format!("Deleted {what}"),
            )
            .await;
        }
    }

    // status
    let conds = status::conditions_from_rollouts(&rollouts);
    patch_status(
        ctx,
        mv,
        &status::desired(mv, &conds, Some(&rollouts), &now()),
    )
    .await?;
    Ok(Action::requeue(RESYNC))
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Server-side applies the reconciler's status fields if they changed.
async fn patch_status(ctx: &Context, mv: &MultiVac, desired: &serde_json::Value) -> Result<()> {
    if !status::changed(mv, desired) {
        return Ok(());
    }
    let api: Api<MultiVac> =
        Api::namespaced(ctx.client.clone(), &mv.namespace().unwrap_or_default());
    let patch =
        json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac", "status": desired});
    api.patch_status(
        &mv.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics.write("MultiVac/status");
    Ok(())
}

/// Ready=False with the reason and what to fix, for errors only the user can fix.
async fn report_permanent(mv: &MultiVac, ctx: &Context, e: &Error) {
    let reason = match e {
        Error::MissingSecret { .. } => "MissingSecret",
        _ => "InvalidSpec",
    };
    let desired = status::desired(
        mv,
        &status::conditions_from_error(reason, &e.to_string()),
        None,
        &now(),
    );
    if let Err(err) = patch_status(ctx, mv, &desired).await {
        warn!(multivac = %object_key(mv), error = %err, "could not report the error in status");
    }
}

async fn publish(
    ctx: &Context,
    mv: &MultiVac,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &mv.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}
