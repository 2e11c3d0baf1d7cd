//! The MultiVac CustomResourceDefinition, generated from the Rust types the
//! operator reads, and the folders that hold a copy of it.

use kube::CustomResourceExt;
use multivac_operator::MultiVac;
use serde_json::Value;

/// Folders holding the CRD as `<crd name>.yaml`: the canonical copy, the Helm
/// chart's (Helm installs `crds/` before the templates) and kustomize's.
const FOLDERS: [&str; 3] = ["crds", "charts/multivac-operator/crds", "config/crd"];

/// The CRD as JSON with the keys of every object in lexical order: serde_json
/// keeps insertion order when another crate in the build enables its
/// `preserve_order` feature, and the output must not depend on which packages
/// were built together.
pub fn json() -> Value {
    let mut crd = serde_json::to_value(multivac_operator::custom_resource_definition())
        .expect("the CRD serializes to JSON");
    crd.sort_all_objects();
    crd
}

/// The CRD file as committed.
pub fn yaml() -> String {
    serde_yaml::to_string(&json()).expect("the CRD serializes to YAML")
}

/// Repository paths of every copy of the CRD.
pub fn paths() -> Vec<String> {
    let name = MultiVac::crd_name();
    FOLDERS
        .iter()
        .map(|folder| format!("{folder}/{name}.yaml"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed copies are exactly what the types generate, so the YAML
    /// users install never drifts from the Rust types the operator reads.
    #[test]
    fn committed_crd_copies_equal_the_generated_crd() {
        let root = crate::workspace_root();
        let generated = yaml();
        for path in paths() {
            let committed = crate::read(&root, &path).unwrap();
            assert!(
                committed == generated,
                "{path} is stale: run `make generate` (cargo xtask generate)"
            );
        }
    }
}
