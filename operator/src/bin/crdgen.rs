//! Prints the MultiVac CustomResourceDefinition as YAML; the committed
//! `crds/multivacs.multivac.io.yaml` is this output (a test keeps them equal).
//!
//! Keys are sorted at every level: serde_json orders maps by insertion when
//! another crate in the build enables its `preserve_order` feature, and the
//! output must not depend on which packages were built together.

use kube::CustomResourceExt;
use multivac_operator::MultiVac;

fn main() {
    let crd = serde_json::to_value(MultiVac::crd()).expect("the CRD serializes to JSON");
    print!(
        "{}",
        serde_yaml::to_string(&sorted(crd)).expect("the CRD serializes to YAML")
    );
}

/// The same document with the keys of every object in lexical order.
fn sorted(value: serde_json::Value) -> serde_yaml::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_yaml::Value::Mapping(
                entries
                    .into_iter()
                    .map(|(k, v)| (serde_yaml::Value::String(k), sorted(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_yaml::Value::Sequence(items.into_iter().map(sorted).collect())
        }
        other => serde_yaml::to_value(other).expect("a JSON scalar is a YAML scalar"),
    }
}
