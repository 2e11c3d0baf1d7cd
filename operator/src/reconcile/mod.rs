//! One reconciliation of a MultiVac, in stages with typed hand-offs:
//!
//! ```text
//! MultiVac --dereference--> Dereferenced --validate--> Validated --build--> Children
//!          (reads Secrets)                 (pure)                  (pure, `resources`)
//! Children --apply--> Applied (per child: Created/Updated/Unchanged/Removed,
//!                              or why not: Conflict/Rejected/Waiting/Failed; rollouts)
//! Applied  --app user--> AppUser (the app's MongoDB user, made once MongoDB answers)
//! Applied  --rotate--> Progress (a step of a requested credentials rotation)
//! Applied  --status--> MultiVacStatus (server-side applied only on change)
//! ```
//!
//! A child that belongs to someone else, or that the API server refuses, is
//! reported (Ready=False, a Warning event) while every other child is still
//! reconciled; errors worth retrying soon back off in [`error_policy`].

mod apply;
mod dereference;
mod ownership;
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

use crate::cluster::Cluster;
use crate::context::Context;
use crate::crd::{MultiVac, MultiVacStatus, now_seconds};
use crate::credentials::{self, AppUser};
use crate::error::{Error, Result};
use crate::kind::Kind;
use crate::resources::{self, Passwords};
use crate::telemetry::{ErrorLabels, ResultLabels};
use crate::validated::Validated;
use apply::{Applied, Change, Problem};
use ownership::Owner;

#[cfg(test)]
pub(crate) use dereference::{Dereferenced, SecretKey, referenced};
pub(crate) use validate::validate;

/// How often a healthy MultiVac is re-checked even without watch events
/// (drift the watches could miss); reads only.
const RECHECK_INTERVAL: Duration = Duration::from_secs(300);
/// How often a MultiVac waiting for a referenced Secret is re-checked: the
/// operator does not watch the user's Secrets, so their creation brings no event.
const MISSING_SECRET_RECHECK: Duration = Duration::from_secs(30);
/// How often a MultiVac with a conflicting or refused child is re-checked:
/// what fixes it (the other object deleted, a quota raised) brings no event.
const BLOCKED_RECHECK: Duration = Duration::from_secs(30);
/// How often a MultiVac waiting for the garbage collector is re-checked.
const WAITING_RECHECK: Duration = Duration::from_secs(5);
/// How often a MultiVac that uses Secrets of the user's (API token, external
/// store URLs) is re-read: a change of their content rolls the pods within
/// this delay (Secrets are not watched).
const USER_SECRET_RECHECK: Duration = Duration::from_secs(60);

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
    if let Error::MissingSecret { .. } | Error::CredentialsMissing { .. } = error {
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
    let valid = validate(mv, &read, ctx.default_app_image.as_deref())?;
    let owner = Owner::new(valid.owner.clone(), valid.namespace);
    let children = resources::build(&valid, &ctx.operator_namespace, Passwords::generate)?;
    let credentials_meta = read.credentials.as_ref().map(|c| &c.meta);
    let mut applied = apply::apply(&cluster, &children, &owner, credentials_meta).await;
    publish_changes(ctx, mv, &applied).await;
    let mut failure = applied.take_failure();
    let blocked = Blocked::of(&applied);
    if blocked.is_none()
        && let Some(e) = failure.take()
    {
        // Nothing is known to be wrong for good: the status stays as it was
        // (its observedGeneration says which spec it describes) until a retry.
        return Err(e);
    }
    let creds = usable_credentials(&read, &applied);
    let app_user = match creds {
        Some(creds) => {
            let available = rolled_out(&applied, "mongodb");
            credentials::ensure_app_user(ctx, &valid, creds, available).await
        }
        None => AppUser::Settled,
    };
    if let AppUser::Created(note) = &app_user {
        info!("{note}");
        publish(
            ctx,
            mv,
            EventType::Normal,
            "MongoDBUserCreated",
            "Bootstrap",
            note.clone(),
            None,
        )
        .await;
    }
    let rotation = match creds {
        Some(creds) => rotate(ctx, &cluster, &valid, creds, &applied).await,
        None => credentials::Progress::default(),
    };
    if let Some((type_, reason, note)) = &rotation.event {
        info!(reason, "{note}");
        publish(ctx, mv, *type_, reason, "Rotate", note.clone(), None).await;
    }
    let mut conditions = status::conditions_from_rollouts(&applied.rollouts);
    if let AppUser::Missing(message) = &app_user {
        // The app's pods may all be up, but cannot use MongoDB.
        status::waiting(&mut conditions, WAITING_FOR_MONGODB_USER, message);
    }
    if let Some(message) = &rotation.message {
        status::rotating(&mut conditions, message);
    }
    if let Some(b) = &blocked {
        // Ready=False says what is wrong, whatever the rollouts say.
        status::not_ready(&mut conditions, b.reason, &b.message);
        publish_blocked(ctx, mv, &applied).await;
        record_error(ctx, b.metric_label);
    }
    let rollouts = Some(applied.rollouts.as_slice());
    let status = status::reconciler_status(mv, &conditions, rollouts, &now_seconds());
    patch_status(&cluster, mv, &status).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut recheck = requeue_after(mv, &rotation);
    if let AppUser::Missing(_) = app_user {
        recheck = recheck.min(credentials::APP_USER_RETRY);
    }
    Ok(Action::requeue(match blocked {
        None => recheck,
        Some(b) if b.waiting_only => WAITING_RECHECK,
        Some(_) => BLOCKED_RECHECK.min(recheck),
    }))
}

/// The credentials Secret, if it is this MultiVac's: only then is it used
/// (for the app's MongoDB user) or rotated; a foreign one is reported as a
/// conflict by the apply and left alone.
fn usable_credentials<'a>(
    read: &'a dereference::Dereferenced,
    applied: &Applied,
) -> Option<&'a credentials::Credentials> {
    let creds = read.credentials.as_ref()?;
    let blocked = applied
        .blocked()
        .any(|(child, _)| child.kind == Kind::Secret && child.name == creds.name);
    (!blocked).then_some(creds)
}

/// Whether the Deployment of `component` runs its current spec, available.
fn rolled_out(applied: &Applied, component: &str) -> bool {
    applied
        .rollouts
        .iter()
        .find(|r| r.component == component)
        .is_some_and(apply::Rollout::done)
}

/// A step of a requested credentials rotation, once the apply is done.
async fn rotate(
    ctx: &Context,
    cluster: &Cluster<'_>,
    valid: &Validated<'_>,
    creds: &credentials::Credentials,
    applied: &Applied,
) -> credentials::Progress {
    let rolled_out = rolled_out(applied, "server") && rolled_out(applied, "worker");
    credentials::advance(ctx, cluster, valid, creds, rolled_out).await
}

/// The children left as they are, as the Ready condition reports them.
struct Blocked {
    reason: &'static str,
    /// Every blocked child with why, in apply order.
    message: String,
    metric_label: &'static str,
    /// Only children waiting for the garbage collector: nothing for the user to do.
    waiting_only: bool,
}

impl Blocked {
    fn of(applied: &Applied) -> Option<Self> {
        let blocked: Vec<_> = applied.blocked().collect();
        // The reason the user most has to act on.
        let (reason, metric_label) =
            blocked
                .iter()
                .map(|(_, p)| reason_of(p))
                .min_by_key(|(reason, _)| match *reason {
                    "Conflict" => 0,
                    "ChildRejected" => 1,
                    _ => 2,
                })?;
        let message = blocked
            .iter()
            .map(|(child, p)| format!("{child} {}", problem_text(p)))
            .collect::<Vec<_>>()
            .join("; ");
        Some(Self {
            reason,
            message,
            metric_label,
            waiting_only: reason == WAITING,
        })
    }
}

const WAITING: &str = "WaitingForGarbageCollection";
/// Ready=False and Progressing=True until the app's MongoDB user exists.
const WAITING_FOR_MONGODB_USER: &str = "WaitingForMongoDBUser";

/// The condition reason and metric label of a problem.
fn reason_of(p: &Problem) -> (&'static str, &'static str) {
    match p {
        Problem::Conflict(_) => ("Conflict", "conflict"),
        Problem::Rejected(_) => ("ChildRejected", "child_rejected"),
        Problem::Waiting(_) => (WAITING, "waiting"),
        Problem::Failed(e) => ("ReconcileFailed", e.metric_label()),
    }
}

fn problem_text(p: &Problem) -> String {
    match p {
        Problem::Conflict(m) | Problem::Rejected(m) | Problem::Waiting(m) => m.clone(),
        Problem::Failed(e) => e.to_string(),
    }
}

/// When to look again without a watch event: soon while a rotation runs,
/// within [`USER_SECRET_RECHECK`] when the pods use the user's Secrets,
/// else [`RECHECK_INTERVAL`].
fn requeue_after(mv: &MultiVac, rotation: &credentials::Progress) -> Duration {
    let base = match dereference::referenced(mv).is_empty() {
        false => USER_SECRET_RECHECK,
        true => RECHECK_INTERVAL,
    };
    rotation.requeue.map_or(base, |r| r.min(base))
}

/// `namespace/name`: the key of the backoff's failure count.
fn object_key(mv: &MultiVac) -> String {
    format!("{}/{}", mv.namespace().unwrap_or_default(), mv.name_any())
}

fn record_error(ctx: &Context, label: &'static str) {
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabels { error: label })
        .inc();
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
    record_error(ctx, e.metric_label());
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
    for reason in ["Created", "Updated", "Deleted"] {
        let children: Vec<String> = applied
            .changes()
            .filter(|(_, change)| change_reason(*change) == Some(reason))
            .map(|(child, _)| child.to_string())
            .collect();
        if children.is_empty() {
            continue;
        }
        info!(children = %children.join(", "), "{reason}");
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(change_note(reason, &children)),
            action: "Apply".into(),
            secondary: None,
        };
        publish_unfolded(ctx, mv, &event).await;
    }
}

/// The Event reason for a write to a child; `None` when nothing was written.
fn change_reason(change: Change) -> Option<&'static str> {
    match change {
        Change::Created => Some("Created"),
        Change::Updated => Some("Updated"),
        Change::Removed => Some("Deleted"),
        Change::Unchanged => None,
    }
}

/// Longest note an `events.k8s.io` Event may carry, in bytes.
const MAX_NOTE: usize = 1024;

/// `reason` and the children it applies to, in one note: one Event per
/// reconcile and reason, not one per child (at 1,000 MultiVacs, 14,000
/// Events at creation were a large share of the API server's writes). Cut
/// to what an Event may hold, saying how many children were left out.
fn change_note(reason: &str, children: &[String]) -> String {
    let whole = format!("{reason} {}", children.join(", "));
    if whole.len() <= MAX_NOTE {
        return whole;
    }
    let mut note = reason.to_string();
    for (i, child) in children.iter().enumerate() {
        let separator = if i == 0 { " " } else { ", " };
        let more = format!(" and {} more", children.len() - i - 1);
        if note.len() + separator.len() + child.len() + more.len() > MAX_NOTE {
            return format!("{note} and {} more", children.len() - i);
        }
        note.push_str(separator);
        note.push_str(child);
    }
    note
}

/// A Warning event for each child that is newly blocked or blocked for a new
/// reason (its text is not yet in the Ready condition), once per distinct
/// message.
async fn publish_blocked(ctx: &Context, mv: &MultiVac, applied: &Applied) {
    let reported = status::ready_message(mv);
    for (child, problem) in applied.blocked() {
        let text = format!("{child} {}", problem_text(problem));
        let (reason, _) = reason_of(problem);
        if reason == WAITING || reported.contains(&text) {
            continue;
        }
        warn!(%child, "{text}");
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(text),
            action: "Apply".into(),
            secondary: Some(child.object_ref(&mv.namespace().unwrap_or_default())),
        };
        publish_unfolded(ctx, mv, &event).await;
    }
}

/// Publishes `event` as a new Event, never folded into an earlier series:
/// the shared recorder folds Events with the same reason and related object
/// into the first one's series and keeps the first note, so a new child list
/// or a new problem text would not show.
async fn publish_unfolded(ctx: &Context, mv: &MultiVac, event: &Event) {
    let unfolded = kube::runtime::events::Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(e) = unfolded.publish(event, &mv.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
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
        Error::CredentialsMissing { .. } => "CredentialsMissing",
        Error::NoAppImage => "NoAppImage",
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
