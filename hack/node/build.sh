#!/usr/bin/env bash
# Builds the real node's binaries into the control plane's cache bin folder
# (printed on stdout), once. One `go build` of this folder's module, which
# pins them:
#   - kubelet and kube-proxy from the same k8s.io/kubernetes release as the
#     control plane (this go.mod is hack/cluster/go.mod plus what only the node
#     needs, at the same versions, so the Go build cache shares every package
#     the control plane's build already compiled);
#   - CoreDNS with only the plugins the node's Corefile uses (./coredns), the
#     cluster DNS the node's pods resolve `<service>.<namespace>.svc` with;
#   - kube-router, run with only its NetworkPolicy controller (firewall) beside
#     the bridge CNI.
# The CoreDNS version is the newest whose requirements raise no module the
# Kubernetes build shares (checked with `go get`: v1.15.0 raises
# golang.org/x/sys, grpc and more, which would recompile nearly everything);
# kube-router v2.1.0 raises none.
# Then crane, the daemonless image tool that assembles the node's OCI images,
# from its own release module: in this module, crane v0.21.5 and later raise
# github.com/docker/go-connections past what kube-router's docker client
# compiles with, and older ones raise github.com/docker/docker.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
here="$MULTIVAC_ROOT/hack/node"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
bin="$(cluster_bin_dir)"
stamp="$bin/.node-stamp"
want="$({ cat "$here/go.mod" "$here/go.sum" "$here/build.sh" "$here"/coredns/*.go; go env GOVERSION 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)"
CRANE_VERSION=v0.22.1
bins=(kubelet kube-proxy coredns kube-router crane)

all_there() {
  local b
  for b in "${bins[@]}"; do [ -x "$bin/$b" ] || return 1; done
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]
}
if all_there; then
  log "node binaries (${bins[*]}) are built: $bin"
  echo "$bin"; exit 0
fi

command -v go >/dev/null || die "go is not installed: the node's binaries are built from Go modules (install Go $(sed -n 's/^go //p' "$here/go.mod") or newer)"
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
log "building kubelet, kube-proxy, CoreDNS and kube-router into $bin"
(cd "$here" && nice -n 10 go build -trimpath -ldflags="$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy ./coredns \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
log "building crane $CRANE_VERSION"
# go install with a version builds exactly that release's go.mod/go.sum
# (checked against the Go checksum database), outside this module.
GOFLAGS="" GOBIN="$bin" nice -n 10 go install -trimpath -ldflags="-s -w" \
  "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
echo "$want" > "$stamp"
log "node binaries ready in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
