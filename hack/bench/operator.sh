#!/usr/bin/env bash
# Benchmark of the MultiVac reconciler (issue 4) on the local control plane.
# Prints:
#   1. time from `kubectl apply` of one MultiVac to condition Ready;
#   2. time for N (default 100) MultiVacs applied at once to all be Ready;
#   3. API writes during 60 s while the N healthy MultiVacs sit unchanged: the
#      operator's own count (multivac_operator_api_writes_total) and the API
#      server's (apiserver_request_total, POST/PUT/PATCH/DELETE/APPLY, which also
#      counts kwok's and the controllers' writes); then the same after forcing a
#      reconcile of every MultiVac (an annotation poke), which must write nothing;
#   4. the operator's resident memory (VmRSS) with the N MultiVacs.
# The PVCs of the managed stores bind through the cluster's default
# StorageClass (the local cluster's provisioner; that time is inside the
# figures), and its kwok nodes have room for the pods (hack/cluster.sh).
# Uses the cluster of $KUBECONFIG when it answers, else starts one with
# `hack/cluster.sh up` in a temporary state dir and stops it afterwards.
#   MULTIVACS=100 PROFILE=release|dev [OPERATOR=path/to/binary] bash hack/bench/operator.sh
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$MULTIVAC_ROOT"

MULTIVACS="${MULTIVACS:-100}"
PROFILE="${PROFILE:-release}"
WORK="$(mktemp -d /tmp/multivac-bench-operator.XXXXXX)"
PIDS=()
CLUSTER_STARTED=""
NS="bench-operator-$$"

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -z "$CLUSTER_STARTED" ] && [ -n "${KUBECONFIG:-}" ]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
    # The default class retains volumes: drop the bench's PV objects (their
    # directories stay with the cluster until it is stopped).
    kubectl get pv -o jsonpath="{range .items[?(@.spec.claimRef.namespace==\"$NS\")]}{.metadata.name}{\"\n\"}{end}" 2>/dev/null \
      | xargs -r kubectl delete pv --wait=false >/dev/null 2>&1
  fi
  [ -n "$CLUSTER_STARTED" ] && bash hack/cluster.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${OPERATOR:-}" ]; then
  log "using the operator binary $OPERATOR"
elif [ "$PROFILE" = release ]; then
  log "building the operator (release profile)"
  cargo build -q --release -p multivac-operator --bins
  OPERATOR="${CARGO_TARGET_DIR:-target}/release/multivac-operator"
else
  log "building the operator (dev profile)"
  cargo build -q -p multivac-operator --bins
  OPERATOR="${CARGO_TARGET_DIR:-target}/debug/multivac-operator"
fi

if [ -z "${KUBECONFIG:-}" ] || ! kubectl get --raw /readyz >/dev/null 2>&1; then
  log "starting a local control plane"
  export MULTIVAC_CLUSTER_STATE="$WORK/cluster"
  bash hack/cluster.sh build
  CLUSTER_STARTED=1
  bash hack/cluster.sh up
  eval "$(bash hack/cluster.sh env)"
fi

kubectl apply --server-side --force-conflicts --field-manager=bench -f crds/multivacs.multivac.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/multivacs.multivac.io --timeout=60s >/dev/null
kubectl get storageclass -o jsonpath='{.items[*].metadata.annotations.storageclass\.kubernetes\.io/is-default-class}' | grep -qw true \
  || die "the cluster has no default StorageClass, so the managed stores' PVCs would never bind: use the local cluster (hack/cluster.sh up)"
kubectl create namespace "$NS" >/dev/null

METRICS_PORT="$(free_port)"
log "starting the operator"
RUST_LOG=warn POD_NAMESPACE=multivac-system "$OPERATOR" --leader-election=false \
  --metrics-bind "127.0.0.1:$METRICS_PORT" >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
PIDS+=("$OPERATOR_PID")
for _ in $(seq 100); do curl -sf "127.0.0.1:$METRICS_PORT/readyz" >/dev/null && break; sleep 0.1; done

multivac() {
  printf 'apiVersion: multivac.io/v1alpha1\nkind: MultiVac\nmetadata: {name: %s, namespace: %s}\nspec: {image: "multivac:bench"}\n---\n' "$1" "$NS"
}
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
op_counter() { # sum of an operator metric family (lines starting with $1, without $2 if given)
  curl -sf "127.0.0.1:$METRICS_PORT/metrics" \
    | awk -v m="$1" -v x="${2:-}" 'index($0, m) == 1 && (x == "" || index($0, x) == 0) { s += $NF } END { print s + 0 }'
}
apiserver_writes() {
  kubectl get --raw /metrics | awk '/^apiserver_request_total\{/ && /verb="(POST|PUT|PATCH|DELETE|APPLY)"/ { s += $NF } END { printf "%d\n", s }'
}

log "1. one MultiVac: apply -> Ready"
t0="$(now)"
multivac single | kubectl apply -f - >/dev/null
kubectl -n "$NS" wait --for=condition=Ready mv/single --timeout=180s >/dev/null
ONE="$(secs "$t0" "$(now)")"
echo "apply -> Ready, one MultiVac: ${ONE} s"

log "1b. one MultiVac with external Redis/MongoDB (no PVCs: operator + kwok only)"
kubectl -n "$NS" create secret generic ext --from-literal=redis-url=redis://:x@127.0.0.1:9/0 \
  --from-literal=mongodb-uri=mongodb://u:p@127.0.0.1:9/ >/dev/null
t0="$(now)"
printf 'apiVersion: multivac.io/v1alpha1\nkind: MultiVac\nmetadata: {name: external, namespace: %s}\nspec: {image: "multivac:bench", redis: {external: {secretRef: {name: ext}}}, mongodb: {external: {secretRef: {name: ext}}}}\n' "$NS" \
  | kubectl apply -f - >/dev/null
kubectl -n "$NS" wait --for=condition=Ready mv/external --timeout=180s >/dev/null
echo "apply -> Ready, one MultiVac with external datastores: $(secs "$t0" "$(now)") s"

log "2. $MULTIVACS MultiVacs applied at once -> all Ready"
for i in $(seq -w 1 "$MULTIVACS"); do multivac "mv$i"; done > "$WORK/fleet.yaml"
t0="$(now)"
kubectl apply -f "$WORK/fleet.yaml" >/dev/null
kubectl -n "$NS" wait --for=condition=Ready mv --all --timeout=900s >/dev/null
FLEET="$(secs "$t0" "$(now)")"
echo "apply -> all Ready, $MULTIVACS MultiVacs: ${FLEET} s"
sum="$(op_counter multivac_operator_reconcile_duration_seconds_sum)"
cnt="$(op_counter multivac_operator_reconcile_duration_seconds_count)"
echo "reconciliations so far: $cnt, mean reconcile duration: $(python3 -c "print(f'{1000 * $sum / max($cnt, 1):.1f}')") ms"

log "3. API writes while $((MULTIVACS + 2)) healthy MultiVacs sit unchanged"
sleep 10
op0="$(op_counter multivac_operator_api_writes_total)"
re0="$(op_counter multivac_operator_api_writes_total scaler:)"
api0="$(apiserver_writes)"
sleep 60
op1="$(op_counter multivac_operator_api_writes_total)"
re1="$(op_counter multivac_operator_api_writes_total scaler:)"
api1="$(apiserver_writes)"
echo "operator API writes in 60 s idle: reconciler $(python3 -c "print(int($re1 - $re0))"), reconciler + scaler $(python3 -c "print(int($op1 - $op0))")"
echo "API server writes in 60 s idle, all clients (kwok heartbeats, controllers, operator): $((api1 - api0))"
rec0="$(op_counter multivac_operator_reconciliations_total)"
re1="$(op_counter multivac_operator_api_writes_total scaler:)"
kubectl -n "$NS" annotate mv --all "bench-poke=$(date +%s)" --overwrite >/dev/null
sleep 60
op2="$(op_counter multivac_operator_api_writes_total)"
re2="$(op_counter multivac_operator_api_writes_total scaler:)"
rec1="$(op_counter multivac_operator_reconciliations_total)"
echo "every MultiVac reconciled again (annotation poke): $(python3 -c "print(int($rec1 - $rec0))") reconciliations; API writes in the next 60 s: reconciler $(python3 -c "print(int($re2 - $re1))"), reconciler + scaler $(python3 -c "print(int($op2 - $op1))")"
curl -sf "127.0.0.1:$METRICS_PORT/metrics" | grep '^multivac_operator_api_writes_total' | sed 's/^/  since start: /' || true

log "4. operator memory"
RSS_KB="$(awk '/^VmRSS/ { print $2 }' "/proc/$OPERATOR_PID/status")"
echo "operator VmRSS with $((MULTIVACS + 2)) MultiVacs: $((RSS_KB / 1024)) MiB (${RSS_KB} kB)"
