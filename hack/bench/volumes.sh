#!/usr/bin/env bash
# Benchmark of volume binding on the local control plane (issue 16): the time
# from creating a PersistentVolumeClaim to phase Bound,
#   pre-made:  a claim with no class, then a hostPath PV made for it with a
#              claimRef (what the tests and benchmarks did before the cluster
#              had a provisioner);
#   dynamic:   a claim of the provisioner's multivac-local-delete class (the
#              default class binds the same way, but retains its directories);
# SAMPLES claims one after the other (median and max), then BATCH claims
# created at once (the time until all are Bound; 100 MultiVacs with managed
# stores make 200). Both in one run, so the ratio holds on a busy machine.
# Uses the cluster of $KUBECONFIG when it answers, else starts one with
# `hack/cluster.sh up` in a temporary state dir and stops it afterwards.
#   SAMPLES=5 BATCH=200 bash hack/bench/volumes.sh
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
cd "$MULTIVAC_ROOT"

SAMPLES="${SAMPLES:-5}"
BATCH="${BATCH:-200}"
WORK="$(mktemp -d /tmp/multivac-bench-volumes.XXXXXX)"
NS="bench-volumes-$$"
CLUSTER_STARTED=""
PATH="$(cluster_bin_dir):$PATH"

cleanup() {
  set +e
  if [ -z "$CLUSTER_STARTED" ] && [ -n "${KUBECONFIG:-}" ]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
    kubectl delete pv -l "multivac-bench=$NS" --wait=false >/dev/null 2>&1
  fi
  [ -n "$CLUSTER_STARTED" ] && bash hack/cluster.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${KUBECONFIG:-}" ] || ! kubectl get --raw /readyz >/dev/null 2>&1; then
  log "starting a local control plane"
  export MULTIVAC_CLUSTER_STATE="$WORK/cluster"
  CLUSTER_STARTED=1
  bash hack/cluster.sh up
  eval "$(bash hack/cluster.sh env)"
fi
kubectl create namespace "$NS" >/dev/null

claim() { # NAME CLASS ("" for none)
  printf 'apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: %s, namespace: %s}\nspec: {storageClassName: "%s", accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n---\n' "$1" "$NS" "$2"
}
volume_for() { # CLAIM
  printf 'apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: %s-%s, labels: {multivac-bench: %s}}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], storageClassName: "", persistentVolumeReclaimPolicy: Retain, hostPath: {path: %s/%s, type: DirectoryOrCreate}, claimRef: {namespace: %s, name: %s}}\n---\n' \
    "$NS" "$1" "$NS" "$WORK" "$1" "$NS" "$1"
}
now() { date +%s%N; }
bound() { # CLAIM: waits (watching) until the claim is Bound
  kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Bound --timeout=300s "pvc/$1" >/dev/null
}
# all_bound PREFIX COUNT: polls until COUNT claims named PREFIX-* are Bound
# (`kubectl wait` on many objects waits for them one by one, which takes
# longer than the binding).
all_bound() {
  local deadline=$(( $(date +%s) + 300 ))
  until [ "$(kubectl -n "$NS" get pvc -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}' | grep -c "^$1-[0-9]* Bound$")" -eq "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the $2 claims $1-* were not all Bound within 300 s"
    sleep 0.2
  done
}
stats() { # SECONDS...: median and max
  python3 -c 'import statistics, sys; v = sorted(map(float, sys.argv[1:])); print(f"median {statistics.median(v):.2f} s, max {v[-1]:.2f} s ({len(v)} claims)")' "$@"
}

# one MODE NAME: creates one claim (and, pre-made, its PV) and prints the
# seconds until it is Bound.
one() {
  local t0; t0=$(now)
  if [ "$1" = pre-made ]; then
    claim "$2" "" | kubectl apply -f - >/dev/null
    volume_for "$2" | kubectl apply -f - >/dev/null
  else
    claim "$2" multivac-local-delete | kubectl apply -f - >/dev/null
  fi
  bound "$2"
  python3 -c "print(($(now) - $t0) / 1e9)"
}

# batch MODE PREFIX: BATCH claims in one apply (pre-made: their PVs in a second
# one), the seconds until all are Bound.
batch() {
  local i names=() t0
  for i in $(seq 1 "$BATCH"); do names+=("$2-$i"); done
  t0=$(now)
  if [ "$1" = pre-made ]; then
    for i in "${names[@]}"; do claim "$i" ""; done | kubectl apply -f - >/dev/null
    for i in "${names[@]}"; do volume_for "$i"; done | kubectl apply -f - >/dev/null
  else
    for i in "${names[@]}"; do claim "$i" multivac-local-delete; done | kubectl apply -f - >/dev/null
  fi
  all_bound "$2" "$BATCH"
  python3 -c "print(f'{($(now) - $t0) / 1e9:.2f}')"
}

for mode in pre-made dynamic; do
  if [ "$mode" = dynamic ] && ! kubectl get storageclass multivac-local-delete >/dev/null 2>&1; then
    echo "PVC -> Bound, dynamic: no StorageClass multivac-local-delete in this cluster (start it with hack/cluster.sh up)"
    exit 1
  fi
  log "$mode: $SAMPLES claims one after the other"
  times=()
  for i in $(seq 1 "$SAMPLES"); do times+=("$(one "$mode" "$mode-one-$i")"); done
  echo "PVC -> Bound, $mode, one at a time: $(stats "${times[@]}")"
  log "$mode: $BATCH claims at once"
  echo "PVC -> Bound, $mode, $BATCH at once: all Bound after $(batch "$mode" "$mode-batch") s"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
