#!/usr/bin/env bash
# Builds the real node's binaries into the control plane's cache bin folder
# (printed on stdout), once: kubelet and kube-proxy from the same pinned
# k8s.io/kubernetes release as the control plane (this folder's go.mod is
# hack/cluster/go.mod plus the packages only the node needs), and crane, the
# daemonless image tool that assembles the node's OCI images, and CoreDNS, the
# cluster DNS the node's pods resolve `<service>.<namespace>.svc` with.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
here="$MULTIVAC_ROOT/hack/node"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
CRANE_VERSION=v0.22.1
COREDNS_VERSION=v1.15.0
bin="$(cluster_bin_dir)"
stamp="$bin/.node-stamp"
want="$({ cat "$here/go.mod" "$here/go.sum" "$here/build.sh"; go env GOVERSION 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)"

all_there() {
  local b
  for b in kubelet kube-proxy crane coredns; do [ -x "$bin/$b" ] || return 1; done
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]
}
if all_there; then
  log "node binaries kubelet, kube-proxy $K8S_VERSION, crane $CRANE_VERSION and CoreDNS $COREDNS_VERSION are built: $bin"
  echo "$bin"; exit 0
fi

command -v go >/dev/null || die "go is not installed: kubelet and kube-proxy are built from Go modules (install Go $(sed -n 's/^go //p' "$here/go.mod") or newer)"
mkdir -p "$bin"; rm -f "$stamp"
export GOFLAGS=-mod=readonly CGO_ENABLED=0
start=$(date +%s)
( while sleep 60; do log "still building the node binaries ($(( $(date +%s) - start )) s)"; done ) &
heartbeat=$!
trap 'kill "$heartbeat" 2>/dev/null || true' EXIT

ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=${K8S_VERSION_MAJOR} -X $p.gitMinor=${K8S_VERSION_MINOR}"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
log "building kubelet and kube-proxy $K8S_VERSION into $bin"
(cd "$here" && nice -n 19 go build -trimpath -ldflags="$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
log "building crane $CRANE_VERSION"
# go install with a version builds exactly that release's go.mod/go.sum
# (checked against the Go checksum database), outside this module.
GOFLAGS="" GOBIN="$bin" nice -n 19 go install -trimpath -ldflags="-s -w" \
  "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
log "building CoreDNS $COREDNS_VERSION (the first build takes a while)"
GOFLAGS="" GOBIN="$bin" nice -n 19 go install -trimpath -ldflags="-s -w" \
  "github.com/coredns/coredns@$COREDNS_VERSION"
echo "$want" > "$stamp"
log "node binaries ready in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
