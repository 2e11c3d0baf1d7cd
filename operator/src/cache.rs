//! The controller's caches: one reflector store per kind of child, fed by the
//! same watches that trigger reconciles, so a reconcile reads its children
//! from memory instead of sending a GET per child. Kinds without a store (the
//! Secrets: the operator may not list or watch them) are read from the API
//! server. Objects are slimmed (see [`slim`]) and kept as [`Cached`]: typed
//! metadata, the rest as JSON text.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Annotation `kubectl apply` keeps a copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The stores of one controller run, by kind.
#[derive(Clone, Default)]
pub(crate) struct Caches {
    stores: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// Whether each store holds its first full list.
    synced: Vec<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Caches {
    /// Adds the store of kind `K`, replacing any earlier one.
    pub(crate) fn insert<K>(&mut self, store: Store<Cached<K>>)
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        let probe = store.clone();
        self.synced.push(Arc::new(move || {
            matches!(probe.wait_until_ready().now_or_never(), Some(Ok(())))
        }));
        self.stores.insert(TypeId::of::<K>(), Arc::new(store));
    }

    /// The store of kind `K`, if the controller caches that kind.
    pub(crate) fn store<K>(&self) -> Option<Store<Cached<K>>>
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        self.stores
            .get(&TypeId::of::<K>())
            .and_then(|s| s.downcast_ref::<Store<Cached<K>>>())
            .cloned()
    }

    /// Waits until every store holds its first full list: before that, an
    /// object missing from a store may well exist, and reading it as absent
    /// would re-apply every child at each start.
    ///
    /// Polls instead of awaiting `Store::wait_until_ready`, which wakes only
    /// the last of several tasks waiting on the same store.
    pub(crate) async fn synced(&self) {
        while !self.synced.iter().all(|synced| synced()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the stores keep of an object: everything but the managed fields and
/// `kubectl apply`'s copy of the object, which together are often larger
/// than the object itself and which nothing in the operator reads (the
/// comparison with the built object only looks at fields the operator sets).
pub(crate) fn slim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// An object as the stores keep it: its metadata typed (owners, labels and
/// generation are read on every trigger and reconcile), everything else as
/// compact JSON, decoded when a reconcile or a poll reads it. A typed
/// k8s-openapi object holds every optional field inline: one of the
/// operator's Deployments takes about 15 KB of heap typed and under 3 KB as
/// JSON, and the typed children of 1,000 MultiVacs took about 100 MB.
pub(crate) struct Cached<K> {
    metadata: ObjectMeta,
    rest: Box<str>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Resource + Serialize + DeserializeOwned> Cached<K> {
    /// `object`, slimmed, in the stores' form.
    pub(crate) fn new(mut object: K) -> Self {
        slim(&mut object);
        let rest = match serde_json::to_value(&object) {
            Ok(Value::Object(mut fields)) => {
                fields.remove("metadata");
                Value::Object(fields).to_string()
            }
            // Never seen (the object was just deserialized); reading it
            // fails, so a reconcile reports the error instead of using half
            // an object.
            other => {
                tracing::warn!(name = ?object.meta().name, result = ?other.map(|_| ()), "cannot cache an object");
                String::new()
            }
        };
        Self {
            metadata: std::mem::take(object.meta_mut()),
            rest: rest.into_boxed_str(),
            kind: PhantomData,
        }
    }

    /// The object, typed.
    pub(crate) fn object(&self) -> Result<K, serde_json::Error> {
        serde_json::from_value(self.value()?)
    }

    /// The fields of the object (but its metadata: [`Resource::meta`]) that
    /// `T` names, decoded without the others: for a reader that needs a few
    /// of them often (the scaler's poll).
    pub(crate) fn fields<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.rest)
    }

    /// The object as JSON, as the API server sent it (slimmed).
    pub(crate) fn value(&self) -> Result<Value, serde_json::Error> {
        let mut value: Value = serde_json::from_str(&self.rest)?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("metadata".into(), serde_json::to_value(&self.metadata)?);
        }
        Ok(value)
    }
}

/// A watch event of `K` in the stores' form.
pub(crate) fn compact<K>(event: Event<K>) -> Event<Cached<K>>
where
    K: Resource + Serialize + DeserializeOwned,
{
    match event {
        Event::Apply(o) => Event::Apply(Cached::new(o)),
        Event::Delete(o) => Event::Delete(Cached::new(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(Cached::new(o)),
        Event::InitDone => Event::InitDone,
    }
}

/// Decodes `K` and keeps it in the stores' form (a watch's trigger type
/// must be deserializable, though these objects always come from a watch).
impl<'de, K: Resource + Serialize + DeserializeOwned> serde::Deserialize<'de> for Cached<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(deserializer).map(Cached::new)
    }
}

impl<K> Clone for Cached<K> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            rest: self.rest.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Cached<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("metadata", &self.metadata)
            .field("rest", &self.rest)
            .finish()
    }
}

/// The kind of `K`, so a store, a watch's owner mapping and a predicate
/// treat a `Cached<K>` as the object it holds.
impl<K: Resource> Resource for Cached<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher::Event;
    use serde_json::json;

    #[test]
    fn slim_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "a", "annotations": {LAST_APPLIED: "{...}", "keep": "1"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"selector": {}, "template": {}}}))
        .unwrap();
        slim(&mut d);
        assert_eq!(d.metadata.managed_fields, None);
        assert_eq!(
            serde_json::to_value(&d.metadata.annotations).unwrap(),
            json!({"keep": "1"})
        );
    }

    #[test]
    fn a_cached_object_reads_back_as_it_came_slimmed() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "ns", "generation": 3,
                "labels": {"app.kubernetes.io/component": "worker"},
                "annotations": {LAST_APPLIED: "{...}", "multivac.io/spec-hash": "h"},
                "managedFields": [{"manager": "multivac-operator", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
                    "name": "mv", "uid": "u", "controller": true}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i",
                    "resources": {"limits": {"cpu": "500m"}}}]}}},
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3}});
        let mut slimmed: Deployment = serde_json::from_value(live.clone()).unwrap();
        slim(&mut slimmed);

        let cached = Cached::new(serde_json::from_value::<Deployment>(live).unwrap());
        assert_eq!(cached.object().unwrap(), slimmed);
        assert_eq!(
            cached.value().unwrap(),
            serde_json::to_value(&slimmed).unwrap()
        );
        assert_eq!(cached.meta(), &slimmed.metadata);
        assert!(
            !cached.rest.contains("metadata"),
            "metadata is kept typed only"
        );
        #[derive(serde::Deserialize)]
        struct Replicas {
            spec: serde_json::Map<String, Value>,
        }
        let some: Replicas = cached.fields().unwrap();
        assert_eq!(some.spec["replicas"], 2);
        let decoded: Cached<Deployment> =
            serde_json::from_value(serde_json::to_value(&slimmed).unwrap()).unwrap();
        assert_eq!(decoded.object().unwrap(), slimmed);
    }

    #[tokio::test]
    async fn stores_are_found_by_kind_and_synced_after_their_first_list() {
        let (store, mut writer) = reflector::store::<Cached<Deployment>>();
        let mut caches = Caches::default();
        caches.insert(store);
        assert!(caches.store::<Deployment>().is_some());
        assert!(
            caches.store::<Service>().is_none(),
            "not cached: read from the API"
        );
        assert!(
            caches.synced().now_or_never().is_none(),
            "not synced before the first list"
        );
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"selector": {}, "template": {}}}))
        .unwrap();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&compact(Event::InitApply(d)));
        writer.apply_watcher_event(&Event::InitDone);
        assert!(caches.synced().now_or_never().is_some());
        let cached = caches.store::<Deployment>().unwrap();
        assert!(cached.get(&ObjectRef::new("a").within("ns")).is_some());
    }
}
