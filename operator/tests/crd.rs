//! The committed CRD is exactly what `crdgen` prints, so the YAML users
//! install never drifts from the Rust types the operator reads.

use std::process::Command;

#[test]
fn committed_crd_equals_crdgen_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .output()
        .expect("run crdgen");
    assert!(
        out.status.success(),
        "crdgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/multivacs.multivac.io.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("read crds/multivacs.multivac.io.yaml");
    assert!(
        committed == String::from_utf8(out.stdout).unwrap(),
        "crds/multivacs.multivac.io.yaml is stale: run `cargo run -p multivac-operator --bin crdgen > crds/multivacs.multivac.io.yaml`"
    );
}
