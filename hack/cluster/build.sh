#!/usr/bin/env bash
# Builds the local control plane's binaries from the pinned Go modules in this
# folder into the cache (printed on stdout), once: a stamp holding the hash of
# the module files lets later runs reuse them. No binary is downloaded; the Go
# module proxy serves the sources.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"
here="$MULTIVAC_ROOT/hack/cluster"

# shellcheck source=hack/cluster/version.sh
source "$here/version.sh"
bin="$(cluster_bin_dir)"
stamp="$bin/.stamp"
want="$(cluster_stamp)"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)
stages="$(cluster_kwok_stages)"

all_there() {
  local b
  for b in "${bins[@]}"; do [ -x "$bin/$b" ] || return 1; done
  [ -s "$stages" ] || return 1
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]
}

if all_there; then
  log "control plane binaries $K8S_VERSION (etcd $ETCD_VERSION, kwok $KWOK_VERSION) are built: $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || die "go is not installed: the control plane is built from Go modules (install Go $(sed -n 's/^go //p' "$here/go.mod") or newer)"
mkdir -p "$bin"
rm -f "$stamp"
# readonly: build exactly what go.mod and go.sum pin, never edit them.
export GOFLAGS=-mod=readonly CGO_ENABLED=0
start=$(date +%s)

# Go prints nothing while it compiles; say every minute that it is still busy,
# so a 20-minute first build on two cores does not look hung.
( while sleep 60; do log "still building ($(( $(date +%s) - start )) s)"; done ) &
heartbeat=$!
trap 'kill "$heartbeat" 2>/dev/null || true' EXIT

# The version variables kubectl and the components report; without them they
# claim v0.0.0-master and kubectl warns about version skew.
pkg_ver=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
ldflags="-s -w"
for p in "${pkg_ver[@]}"; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=${K8S_VERSION_MAJOR} -X $p.gitMinor=${K8S_VERSION_MINOR}"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION and etcd $ETCD_VERSION into $bin (the first build takes a while)"
(cd "$here" && go build -trimpath -ldflags="$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  ./etcd)
log "built the Kubernetes components and etcd in $(( $(date +%s) - start )) s"

log "building kwok $KWOK_VERSION"
(cd "$here/kwok" && go build -trimpath \
  -ldflags="-s -w" \
  -o "$bin/kwok" sigs.k8s.io/kwok/cmd/kwok)

# kwok ships its lifecycle stages as YAML in its module but compiles none in:
# take the "fast" node and pod stages (nodes Ready at once, heartbeat through
# node leases; pods Running and Ready once bound, deleted at once when
# terminating) from the pinned module, so they match the binary.
kwok_dir="$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$kwok_dir/kustomize/stage/$f"
  done
} > "$stages.tmp"
mv "$stages.tmp" "$stages"

echo "$want" > "$stamp"
log "control plane binaries ready in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
