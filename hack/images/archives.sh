#!/usr/bin/env bash
# `make images`: the app and operator images of this checkout as OCI archives
# for a local cluster (docs/install.md shows the kind and k3d commands that
# load them), built without a Docker daemon:
#   $MULTIVAC_IMAGE_OUT/multivac.tar           multivac.local/multivac:$MULTIVAC_IMAGE_TAG
#   $MULTIVAC_IMAGE_OUT/multivac-operator.tar  multivac.local/multivac-operator:$MULTIVAC_IMAGE_TAG
# (defaults: dist/images and the tag `dev`).
#
# 1. release binaries: `cargo build --release` into MULTIVAC_RELEASE_TARGET
#    (the folder hack/images/build.sh reads; default $MULTIVAC_CACHE/target-release);
# 2. the images: hack/images/build.sh (crane, Debian packages, the Dockerfiles'
#    user, entrypoint, ports and labels);
# 3. each archive checked loadable: a valid OCI image layout (skopeo copies it
#    out of oci-archive:, verifying every blob's digest, and inspects its
#    config), a valid docker archive over the same blobs (`crane validate
#    --tarball`), and the image what its Dockerfile describes
#    (hack/images/compare.py, as hack/images/test.sh does).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
cd "$MULTIVAC_ROOT"

MULTIVAC_RELEASE_TARGET="${MULTIVAC_RELEASE_TARGET:-$MULTIVAC_CACHE/target-release}"
MULTIVAC_IMAGE_OUT="${MULTIVAC_IMAGE_OUT:-$MULTIVAC_ROOT/dist/images}"
MULTIVAC_IMAGE_TAG="${MULTIVAC_IMAGE_TAG:-dev}"
export MULTIVAC_RELEASE_TARGET MULTIVAC_IMAGE_OUT MULTIVAC_IMAGE_TAG

apt_install skopeo
bin="$(cluster_bin_dir)"

log "release binaries into $MULTIVAC_RELEASE_TARGET (the first build takes a long while)"
CARGO_TARGET_DIR="$MULTIVAC_RELEASE_TARGET" nice -n 10 cargo build --release --locked -p multivac -p multivac-operator

log "images into $MULTIVAC_IMAGE_OUT"
bash hack/images/build.sh multivac multivac-operator >/dev/null

work="$(mktemp -d /tmp/multivac-archives.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# oci_layout TAR REF: skopeo reads the archive as an OCI layout, copies the
# image out of it (every blob read and its digest checked) and finds REF's
# config in it.
oci_layout() {
  local tar="$1" ref="$2" out="$work/copy-$RANDOM"
  skopeo copy --quiet "oci-archive:$tar" "oci:$out:copy"
  skopeo inspect --config "oci-archive:$tar" | python3 -c '
import json, sys
c = json.load(sys.stdin)
print("os/arch:", c["os"] + "/" + c["architecture"], "user:", c["config"].get("User"), "entrypoint:", c["config"].get("Entrypoint"))'
  tar -xOf "$tar" index.json | python3 -c '
import json, sys
want = sys.argv[1]
[m] = json.load(sys.stdin)["manifests"]
name = m.get("annotations", {}).get("io.containerd.image.name")
print("index.json names", name, m["digest"])
sys.exit(0 if name == want else f"index.json names {name!r}, expected {want!r}")' "$ref"
}

for name in multivac multivac-operator; do
  tar="$MULTIVAC_IMAGE_OUT/$name.tar"
  ref="$(bash hack/images/build.sh name "$name")"
  check "$name.tar: a valid OCI image layout naming $ref (skopeo)" oci_layout "$tar" "$ref"
  check "$name.tar: a valid docker archive (crane validate --tarball)" "$bin/crane" validate --tarball "$tar"
done
check "multivac.tar matches Dockerfile.app" python3 hack/images/compare.py \
  Dockerfile.app "$MULTIVAC_IMAGE_OUT/multivac.tar" "$MULTIVAC_RELEASE_TARGET/release/multivac"
check "multivac-operator.tar matches Dockerfile.operator" python3 hack/images/compare.py \
  Dockerfile.operator "$MULTIVAC_IMAGE_OUT/multivac-operator.tar" "$MULTIVAC_RELEASE_TARGET/release/multivac-operator"

ls -l "$MULTIVAC_IMAGE_OUT"/multivac.tar "$MULTIVAC_IMAGE_OUT"/multivac-operator.tar >&2
check_summary images
