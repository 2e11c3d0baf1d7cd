#!/usr/bin/env bash
# Builds the local cluster's volume provisioner (main.go on the pinned
# sig-storage-lib-external-provisioner of this folder's go.mod) into the control
# plane's cache bin folder (printed on stdout), once: its own stamp, a hash of
# this folder's files and the Go version, lets later runs reuse it without
# touching the control plane's stamp.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../../lib.sh"
here="$MULTIVAC_ROOT/hack/cluster/provisioner"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
bin="$(cluster_bin_dir)"
stamp="$bin/.provisioner-stamp"
want="$({ cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh"; go env GOVERSION 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)"
lib_version="$(sed -n 's/^[[:space:]]*sigs.k8s.io\/sig-storage-lib-external-provisioner\/v[0-9]* \(v[0-9.]*\).*/\1/p' "$here/go.mod" | head -1)"

if [ -x "$bin/provisioner" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "volume provisioner (sig-storage-lib-external-provisioner $lib_version) is built: $bin"
  echo "$bin"; exit 0
fi

command -v go >/dev/null || die "go is not installed: the volume provisioner is built from Go modules (install Go $(sed -n 's/^go //p' "$here/go.mod") or newer)"
mkdir -p "$bin"; rm -f "$stamp"
start=$(date +%s)
log "building the volume provisioner (sig-storage-lib-external-provisioner $lib_version) into $bin"
# readonly: build exactly what go.mod and go.sum pin, never edit them.
(cd "$here" && GOFLAGS=-mod=readonly CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags="-s -w" -o "$bin/provisioner" .)
echo "$want" > "$stamp"
log "volume provisioner ready in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
