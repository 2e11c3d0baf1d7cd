# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this
# Versions of the local control plane, where its binaries live and the names of
# its kwok nodes. Sourced by build.sh, hack/cluster.sh and the scripts that use
# the cluster, after hack/lib.sh; the versions are read from the module files so
# they cannot drift from what is built.
_cluster_dir="$MULTIVAC_ROOT/hack/cluster"
K8S_VERSION="$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$_cluster_dir/go.mod" | head -1)"
_k8s_mm="${K8S_VERSION#v}"
K8S_VERSION_MAJOR="${_k8s_mm%%.*}"
_k8s_mm="${_k8s_mm#*.}"
K8S_VERSION_MINOR="${_k8s_mm%%.*}"
ETCD_VERSION="$(sed -n 's/^[[:space:]]*\(require \)\{0,1\}go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\).*/\2/p' "$_cluster_dir/go.mod" | head -1)"
KWOK_VERSION="$(sed -n 's/^[[:space:]]*\(require \)\{0,1\}sigs.k8s.io\/kwok \(v[0-9.]*\).*/\2/p' "$_cluster_dir/kwok/go.mod" | head -1)"

# cluster_bin_dir prints the cache folder of this pinned version's binaries.
cluster_bin_dir() { echo "$MULTIVAC_CACHE/cluster/$K8S_VERSION/bin"; }

# cluster_kwok_stages prints the file of kwok Stage objects that build.sh takes
# from the pinned kwok module.
cluster_kwok_stages() { echo "$MULTIVAC_CACHE/cluster/$K8S_VERSION/kwok-stages.yaml"; }

# cluster_kwok_nodes prints the names of the kwok nodes `hack/cluster.sh up`
# registers: MULTIVAC_KWOK_NODES of them (default 2).
cluster_kwok_nodes() { seq -f 'kwok-node-%g' 0 $(( ${MULTIVAC_KWOK_NODES:-2} - 1 )); }

# cluster_stamp prints a hash of everything the binaries are built from, so a
# change of any pin (or of the Go toolchain) rebuilds them.
cluster_stamp() {
  { cat "$_cluster_dir"/go.mod "$_cluster_dir"/go.sum "$_cluster_dir"/etcd/main.go \
        "$_cluster_dir"/kwok/go.mod "$_cluster_dir"/kwok/go.sum "$_cluster_dir"/build.sh
    go env GOVERSION 2>/dev/null || true; } | sha256sum | cut -d' ' -f1
}
