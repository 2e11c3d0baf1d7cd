#!/usr/bin/env bash
# The two install paths, for real, on the local control plane (KUBECONFIG set by
# hack/test.sh after `hack/cluster.sh up`):
#   a. `helm install` of charts/multivac-operator; the operator (run on this
#      host: the chart's pods are kwok-simulated) with a token of the chart's
#      ServiceAccount reconciles config/samples/multivac.yaml (no spec.image)
#      to Ready, on the app image the chart gives it;
#   b. `kubectl auth can-i` with that token: what the RBAC grants and refuses;
#   c. `kubectl apply -k config/crd` then `-k config/default` (which holds no
#      CRD), and the same with its ServiceAccount;
#   d. leader election: two operators, one Lease; only the holder reconciles;
#      kill -9 it and the other takes over within the lease duration;
#   e. split brain: the leader frozen (SIGSTOP) past its lease while a standby
#      takes over, then resumed with work waiting: the API server's audit log
#      shows it wrote nothing after the takeover, and it exits non-zero.
#   f. uninstalling (`helm uninstall`, `kubectl delete -k config/default`)
#      deletes neither the CRD nor a MultiVac nor its data.
# Every check runs even when an earlier one fails; the last line says how many
# passed, and the exit status is non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
cd "$MULTIVAC_ROOT"

bin="$(cluster_bin_dir)"
kubectl="${KUBECTL:-$bin/kubectl}"
helm="$bin/helm"
[ -x "$kubectl" ] || die "$kubectl is missing: run \`bash hack/cluster.sh build\` (or \`make test\`)"
[ -x "$helm" ] || die "$helm is missing: run \`bash hack/deps/tools.sh\` (or \`make test\`)"
[ -n "${KUBECONFIG:-}" ] && "$kubectl" get --raw /readyz >/dev/null 2>&1 \
  || die "no control plane at KUBECONFIG='${KUBECONFIG:-}': start it with \`bash hack/cluster.sh up\` then \`export KUBECONFIG=\$(bash hack/cluster.sh kubeconfig)\`, or run \`make test\`"

log "building multivac-operator"
cargo build -q --locked -p multivac-operator --bin multivac-operator
operator="${CARGO_TARGET_DIR:-$MULTIVAC_ROOT/target}/debug/multivac-operator"
[ -x "$operator" ] || die "$operator was not built"

chart=charts/multivac-operator
sample=config/samples/multivac.yaml
mv_name="$(awk '/^metadata:/ { m = 1; next } m && /^  name:/ { print $2; exit }' "$sample")"
[ -n "$mv_name" ] || die "no metadata.name in $sample"
helm_release=mvo
helm_ns=multivac-helm
helm_sa="$helm_release-multivac-operator"
kust_ns=multivac-system
kust_sa=multivac-operator
lease=multivac-operator
# The lease duration the operator uses (operator contract: 15 s, renewed ~5 s).
lease_seconds=15
ready_timeout=180s

work="$(mktemp -d /tmp/multivac-install.XXXXXX)"
pids=()
# A failing check shows the last 40 lines of its output (hack/lib.sh).
# shellcheck disable=SC2034 # read by check() in hack/lib.sh
CHECK_TAIL=40

k() { "$kubectl" "$@"; }

cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "$helm" uninstall "$helm_release" -n "$helm_ns" >/dev/null 2>&1 || true
  k delete -k config/rbac --ignore-not-found --wait=false >/dev/null 2>&1 || true
  "$helm" uninstall mvs -n multivac-scoped-op >/dev/null 2>&1 || true
  k delete namespace mv-helm mv-kustomize mv-leader mv-scoped multivac-scoped-op "$helm_ns" "$kust_ns" \
    --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# sa_kubeconfig NS SA FILE: a kubeconfig for the same API server that
# authenticates with a fresh token of ServiceAccount NS/SA, nothing else.
sa_kubeconfig() {
  local ns="$1" sa="$2" file="$3" token server ca
  token="$(k -n "$ns" create token "$sa" --duration=2h)"
  server="$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(k config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
  - name: $ns-$sa
    user: {token: "$token"}
contexts:
  - name: $ns-$sa
    context: {cluster: local, user: $ns-$sa}
current-context: $ns-$sa
EOF
  chmod 600 "$file"
}

# deployed_app_image NS DEPLOYMENT: the default app image the installed
# operator Deployment gives its pods (MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE).
deployed_app_image() {
  k -n "$1" get deploy "$2" \
    -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE")].value}'
}
# server_image NS NAME: the image of MultiVac NAME's server Deployment.
server_image() { k -n "$1" get deploy "$2-server" -o jsonpath='{.spec.template.spec.containers[0].image}'; }

# start_operator NAME KUBECONFIG LEASE_NS [WATCH_NS]: runs the operator on this
# host as POD_NAME=NAME with leader election on the Lease in LEASE_NS (and, like
# the chart's watchNamespace mode, only watching WATCH_NS), with the default
# app image of the installation being tested ($app_image), as its pods get it.
declare -A op_pid op_port
app_image=""
start_operator() {
  local name="$1" kubeconfig="$2" lease_ns="$3" watch_ns="${4:-}" port
  port="$(free_port)"
  KUBECONFIG="$kubeconfig" POD_NAME="$name" POD_NAMESPACE="$lease_ns" RUST_LOG=info \
    MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE="$app_image" \
    env ${watch_ns:+MULTIVAC_OPERATOR_WATCH_NAMESPACE="$watch_ns"} "$operator" --leader-election=true --lease-name="$lease" \
      --metrics-bind="127.0.0.1:$port" --log-format=text >"$work/$name.log" 2>&1 &
  op_pid[$name]=$!
  op_port[$name]=$port
  pids+=("$!")
}
stop_operator() { kill "${op_pid[$1]}" 2>/dev/null || true; wait "${op_pid[$1]}" 2>/dev/null || true; }

metric() { # metric NAME METRIC: the sum of METRIC's samples on operator NAME
  curl -fsS "http://127.0.0.1:${op_port[$1]}/metrics" \
    | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { print s + 0 }'
}
leader_gauge_is() { [ "$(metric "$1" multivac_operator_leader)" = "$2" ]; }
reconciles_of() { metric "$1" multivac_operator_reconciliations_total; }
holder() { k -n "$1" get lease "$lease" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }

# wait_until SECONDS CMD...: polls CMD every 0.5 s.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out: $*"; return 1; }
    sleep 0.5
  done
}

# The managed MongoDB of each MultiVac below that becomes Ready: kwok runs no
# containers, so FerretDB on this host stands in for it, and every operator
# here reaches NAME-mongodb.NS.svc:27017 there (MULTIVAC_OPERATOR_STORE_ADDRESSES)
# to make the app's user, which Ready waits for.
ferretdb="${MULTIVAC_TEST_FERRETDB:-$(bash hack/deps/ferretdb.sh)}"
[ -x "$ferretdb" ] || die "$ferretdb is missing: run \`bash hack/deps/ferretdb.sh\` (or \`make test\`)"
declare -A mongodb_port
store_addresses=()
for target in mv-helm/"$mv_name" mv-scoped/"$mv_name" mv-kustomize/"$mv_name" mv-leader/first mv-leader/second mv-leader/third; do
  mongodb_port[$target]="$(free_port)"
  store_addresses+=("${target#*/}-mongodb.${target%/*}.svc:27017=127.0.0.1:${mongodb_port[$target]}")
done
MULTIVAC_OPERATOR_STORE_ADDRESSES="$(IFS=,; echo "${store_addresses[*]}")"
export MULTIVAC_OPERATOR_STORE_ADDRESSES

# mongodb NS NAME: once the operator made Secret NAME-credentials, runs
# FerretDB with its root user, as the image does, on the port NS/NAME maps to.
mongodb() {
  local port="${mongodb_port[$1/$2]}" secret="$2-credentials" deadline=$(( $(date +%s) + 180 )) user password
  until user="$(k -n "$1" get secret "$secret" -o jsonpath='{.data.mongodb-username}' 2>/dev/null)" && [ -n "$user" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || exit 1
    sleep 0.5
  done
  password="$(k -n "$1" get secret "$secret" -o jsonpath='{.data.mongodb-password}')"
  mkdir -p "$work/mongodb-$1-$2"
  FERRETDB_SETUP_USERNAME="$(base64 -d <<<"$user")" FERRETDB_SETUP_PASSWORD="$(base64 -d <<<"$password")" \
    exec "$ferretdb" --handler=sqlite --sqlite-url="file:$work/mongodb-$1-$2/" --state-dir="$work/mongodb-$1-$2" \
      --listen-addr="127.0.0.1:$port" --debug-addr=127.0.0.1:0 --telemetry=disable --log-level=error \
      --test-enable-new-auth --setup-database=admin >"$work/mongodb-$1-$2.log" 2>&1
}

# apply_sample NS NAME: the minimal sample, renamed, in namespace NS (with the
# stand-in for its MongoDB, if it gets one).
apply_sample() {
  k create namespace "$1" --dry-run=client -o yaml | k apply -f - >/dev/null
  sed "s/^  name: $mv_name\$/  name: $2/" "$sample" | k -n "$1" apply -f -
  if [ -n "${mongodb_port[$1/$2]:-}" ]; then
    mongodb "$1" "$2" &
    pids+=("$!")
  fi
}
# pvcs_bound NS NAME: the two PVCs of MultiVac NAME (managed Redis and
# MongoDB) are Bound through the cluster's default StorageClass.
pvcs_bound() {
  local sel="app.kubernetes.io/instance=$2"
  wait_until 60 phases_are "Bound Bound" "$1" "$sel" \
    || { echo "the two PVCs of $1/$2 are not Bound:"; k -n "$1" get pvc -l "$sel"; return 1; }
}
phases_are() { [ "$(k -n "$2" get pvc -l "$3" -o jsonpath='{.items[*].status.phase}')" = "$1" ]; }
# ready NS NAME: waits for condition Ready; on failure shows the status and
# the operator logs.
ready() {
  pvcs_bound "$1" "$2" || return 1
  k -n "$1" wait --for=condition=Ready "multivac/$2" --timeout="$ready_timeout" || {
    k -n "$1" get multivac "$2" -o yaml | sed -n '/^status:/,$p'
    tail -n 30 "$work"/*.log
    return 1
  }
}

# restricted_ns NS: the operator's namespace enforces Pod Security `restricted`,
# so admission proves the chart's pods are restricted-compliant.
restricted_ns() {
  k create namespace "$1" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "$1" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
}

# Leftovers of an interrupted earlier run (cluster-scoped RBAC survives namespaces).
"$helm" uninstall "$helm_release" -n "$helm_ns" >/dev/null 2>&1 || true
"$helm" uninstall mvs -n multivac-scoped-op >/dev/null 2>&1 || true
k delete -k config/rbac --ignore-not-found >/dev/null 2>&1 || true
k delete namespace mv-helm mv-kustomize mv-leader mv-scoped multivac-scoped-op "$helm_ns" "$kust_ns" --ignore-not-found --timeout=120s >/dev/null \
  || die "namespaces of an earlier run are still terminating; try again in a minute"

# crd_intact: the CRD exists and is not being deleted (deleting it would delete
# every MultiVac in the cluster).
crd_intact() {
  [ "$(k get crd multivacs.multivac.io -o jsonpath='{.metadata.name}/{.metadata.deletionTimestamp}')" = multivacs.multivac.io/ ]
}
# multivac_intact NS NAME: the MultiVac and its two PVCs exist, none being deleted.
multivac_intact() {
  [ -z "$(k -n "$1" get multivac "$2" -o jsonpath='{.metadata.deletionTimestamp}')" ] \
    && [ "$(k -n "$1" get pvc "$2-redis-data" "$2-mongodb-data" -o jsonpath='{range .items[*]}{.metadata.name}/{.metadata.deletionTimestamp} {end}')" = "$2-redis-data/ $2-mongodb-data/ " ]
}

# --- a. Helm ------------------------------------------------------------------------
log "a. helm install $chart into $helm_ns"
restricted_ns "$helm_ns"
# Whether the uninstall check below covers a CRD the chart itself installed.
if k get crd multivacs.multivac.io >/dev/null 2>&1; then
  log "the CRD is already installed: helm install keeps it as it is"
else
  log "no CRD yet: helm install installs it from $chart/crds/"
fi
check "helm install (operator pods admitted as restricted, Deployment Available)" \
  "$helm" install "$helm_release" "$chart" -n "$helm_ns" --wait --timeout 3m
check "CRD multivacs.multivac.io installed (by the chart, or already there)" k get crd multivacs.multivac.io
check "chart's operator Deployment has 2 ready replicas" \
  bash -c '[ "$("$1" -n "$2" get deploy "$3" -o jsonpath="{.status.readyReplicas}")" = 2 ]' _ "$kubectl" "$helm_ns" "$helm_sa"

app_image="$(deployed_app_image "$helm_ns" "$helm_sa")"
chart_version="$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' "$chart/Chart.yaml")"
check "the chart gives the operator its release's app image ($app_image)" \
  bash -c '[ "$1" = "registry.gitlab.com/multivac/multivac/multivac:$2" ]' _ "$app_image" "$chart_version"
sa_kubeconfig "$helm_ns" "$helm_sa" "$work/helm-sa.kubeconfig"
start_operator helm-op "$work/helm-sa.kubeconfig" "$helm_ns"
check "operator with the chart's ServiceAccount token takes its Lease" \
  wait_until 30 bash -c '[ "$("$1" -n "$2" get lease "$3" -o jsonpath="{.spec.holderIdentity}")" = helm-op ]' _ "$kubectl" "$helm_ns" "$lease"
apply_sample mv-helm "$mv_name" >/dev/null
check "sample MultiVac Ready (reconciled with the chart's ServiceAccount)" ready mv-helm "$mv_name"
check "the sample (no spec.image) runs the chart's app image" \
  bash -c '[ "$1" = "$2" ]' _ "$(server_image mv-helm "$mv_name")" "$app_image"

# --- b. what that ServiceAccount may and may not do ----------------------------------
log "b. kubectl auth can-i as system:serviceaccount:$helm_ns:$helm_sa"
sa="$work/helm-sa.kubeconfig"
# The answer must be exactly yes / no: an error (a typo in a resource) fails both.
answer() { KUBECONFIG="$sa" "$kubectl" auth can-i "$@" 2>/dev/null || true; }
can() { local a; a="$(answer "$@")"; echo "$a"; [ "$a" = yes ]; }
cannot() { local a; a="$(answer "$@")"; echo "$a"; [[ "$a" == no* ]]; }
set -f # the '*' below are RBAC wildcards, not globs
while read -r args; do
  # shellcheck disable=SC2086
  check "can    $args" can $args
done <<EOF
watch multivacs.multivac.io --all-namespaces
patch multivacs.multivac.io --subresource=status -n mv-helm
patch deployments.apps -n mv-helm
delete deployments.apps -n mv-helm
create services -n mv-helm
patch configmaps -n mv-helm
patch persistentvolumeclaims -n mv-helm
create secrets -n mv-helm
get secrets -n mv-helm
patch secrets -n mv-helm
delete serviceaccounts -n mv-helm
patch networkpolicies.networking.k8s.io -n mv-helm
patch ingresses.networking.k8s.io -n mv-helm
delete ingresses.networking.k8s.io -n mv-helm
delete poddisruptionbudgets.policy -n mv-helm
create events.events.k8s.io -n mv-helm
patch events.events.k8s.io -n mv-helm
create leases.coordination.k8s.io -n $helm_ns
patch leases.coordination.k8s.io/$lease -n $helm_ns
EOF
while read -r args; do
  # shellcheck disable=SC2086
  check "cannot $args" cannot $args
done <<EOF
* * --all-namespaces
delete nodes
list nodes
create clusterroles.rbac.authorization.k8s.io
create clusterrolebindings.rbac.authorization.k8s.io
escalate clusterroles.rbac.authorization.k8s.io
bind clusterroles.rbac.authorization.k8s.io
create rolebindings.rbac.authorization.k8s.io -n mv-helm
create pods -n mv-helm
create pods/exec -n mv-helm
update multivacs.multivac.io -n mv-helm
patch multivacs.multivac.io -n mv-helm
delete multivacs.multivac.io -n mv-helm
list secrets --all-namespaces
watch secrets --all-namespaces
list secrets -n mv-helm
watch secrets -n mv-helm
update secrets -n mv-helm
delete secrets -n mv-helm
delete persistentvolumeclaims -n mv-helm
delete configmaps -n mv-helm
create events -n mv-helm
delete namespaces
create customresourcedefinitions.apiextensions.k8s.io
create leases.coordination.k8s.io -n kube-system
patch leases.coordination.k8s.io/kube-controller-manager -n kube-system
patch leases.coordination.k8s.io/other-lease -n $helm_ns
EOF
set +f

stop_operator helm-op
check "helm uninstall" "$helm" uninstall "$helm_release" -n "$helm_ns" --wait
check "the uninstalled ServiceAccount's token is refused" \
  refused env KUBECONFIG="$sa" "$kubectl" get multivacs -A
# Helm never deletes what a chart's crds/ folder installed.
check "helm uninstall leaves the CRD" crd_intact
check "helm uninstall leaves the MultiVac and its PVCs" multivac_intact mv-helm "$mv_name"

# --- a2. Helm, namespaced mode ---------------------------------------------------------
scoped_op_ns=multivac-scoped-op
scoped_ns=mv-scoped
log "a2. helm install --set watchNamespace=$scoped_ns (rights only there)"
restricted_ns "$scoped_op_ns"
k create namespace "$scoped_ns" --dry-run=client -o yaml | k apply -f - >/dev/null
check "helm install with watchNamespace" \
  "$helm" install mvs "$chart" -n "$scoped_op_ns" --set watchNamespace="$scoped_ns" --wait --timeout 3m
app_image="$(deployed_app_image "$scoped_op_ns" mvs-multivac-operator)"
sa_kubeconfig "$scoped_op_ns" mvs-multivac-operator "$work/scoped-sa.kubeconfig"
start_operator scoped-op "$work/scoped-sa.kubeconfig" "$scoped_op_ns" "$scoped_ns"
apply_sample "$scoped_ns" "$mv_name" >/dev/null
check "sample MultiVac Ready (namespaced operator, Role-only token)" ready "$scoped_ns" "$mv_name"
sa="$work/scoped-sa.kubeconfig"
check "namespaced: can    patch deployments.apps -n $scoped_ns" can patch deployments.apps -n "$scoped_ns"
check "namespaced: cannot get secrets -n mv-helm (no MultiVac of its there)" cannot get secrets -n mv-helm
check "namespaced: cannot list secrets --all-namespaces" cannot list secrets --all-namespaces
check "namespaced: can    get secrets -n $scoped_ns" can get secrets -n "$scoped_ns"
check "namespaced: cannot list secrets -n $scoped_ns" cannot list secrets -n "$scoped_ns"
check "namespaced: cannot watch secrets -n $scoped_ns" cannot watch secrets -n "$scoped_ns"
check "namespaced: cannot watch multivacs.multivac.io --all-namespaces" cannot watch multivacs.multivac.io --all-namespaces
stop_operator scoped-op
check "helm uninstall the namespaced release" "$helm" uninstall mvs -n "$scoped_op_ns" --wait

# --- c. kustomize -------------------------------------------------------------------
log "c. kubectl apply -k config/crd, then -k config/default"
check "config/default holds no CRD (deleting it must not delete every MultiVac)" \
  bash -c '! "$1" kustomize config/default | grep -q "^kind: CustomResourceDefinition"' _ "$kubectl"
check "kubectl apply --server-side -k config/crd" k apply --server-side -k config/crd
check "kubectl apply -k config/default" k apply -k config/default
check "namespace $kust_ns enforces restricted" \
  bash -c '[ "$("$1" get ns "$2" -o jsonpath="{.metadata.labels.pod-security\.kubernetes\.io/enforce}")" = restricted ]' _ "$kubectl" "$kust_ns"
check "kustomize's operator Deployment Available" \
  k -n "$kust_ns" rollout status deploy/multivac-operator --timeout=3m

app_image="$(deployed_app_image "$kust_ns" multivac-operator)"
sa_kubeconfig "$kust_ns" "$kust_sa" "$work/kust-sa.kubeconfig"
sa="$work/kust-sa.kubeconfig"
check "kustomize: cannot list secrets --all-namespaces" cannot list secrets --all-namespaces
check "kustomize: cannot watch secrets --all-namespaces" cannot watch secrets --all-namespaces
check "kustomize: can    get secrets -n mv-kustomize" can get secrets -n mv-kustomize
start_operator kust-op "$work/kust-sa.kubeconfig" "$kust_ns"
apply_sample mv-kustomize "$mv_name" >/dev/null
check "sample MultiVac Ready (reconciled with config/default's ServiceAccount)" ready mv-kustomize "$mv_name"
check "the sample (no spec.image) runs config/manager's app image ($app_image)" \
  bash -c '[ -n "$2" ] && [ "$1" = "$2" ]' _ "$(server_image mv-kustomize "$mv_name")" "$app_image"
stop_operator kust-op

# --- d. leader election ---------------------------------------------------------------
log "d. leader election: two operators on Lease $kust_ns/$lease"
start_operator op-a "$work/kust-sa.kubeconfig" "$kust_ns"
start_operator op-b "$work/kust-sa.kubeconfig" "$kust_ns"
is_leader() { local h; h="$(holder "$kust_ns")"; [ "$h" = op-a ] || [ "$h" = op-b ]; }
# The stopped kust-op may have left the Lease held until it expires.
check "one of the two holds the Lease" wait_until $((lease_seconds * 3)) is_leader
leader="$(holder "$kust_ns")"
standby=op-b; [ "$leader" = op-b ] && standby=op-a
log "leader: $leader, standby: $standby"
check "leader's multivac_operator_leader is 1" wait_until 10 leader_gauge_is "$leader" 1
check "standby's multivac_operator_leader is 0" leader_gauge_is "$standby" 0
apply_sample mv-leader first >/dev/null
check "MultiVac created while both run is Ready" ready mv-leader first
check "the leader reconciled it" bash -c '[ "$1" -gt 0 ]' _ "$(reconciles_of "$leader")"
check "the standby reconciled nothing" bash -c '[ "$1" -eq 0 ]' _ "$(reconciles_of "$standby")"

log "kill -9 $leader"
kill -9 "${op_pid[$leader]}"
wait "${op_pid[$leader]}" 2>/dev/null || true
killed=$(date +%s)
takes_over() { [ "$(holder "$kust_ns")" = "$standby" ]; }
# The lease has to expire first; allow one renew period and a margin on top.
check "standby takes the Lease within ${lease_seconds} s + 10 s" wait_until $((lease_seconds + 10)) takes_over
log "takeover after $(( $(date +%s) - killed )) s"
check "new leader's multivac_operator_leader is 1" wait_until 10 leader_gauge_is "$standby" 1
apply_sample mv-leader second >/dev/null
check "MultiVac created after the takeover is Ready" ready mv-leader second
check "the new leader reconciled it" bash -c '[ "$1" -gt 0 ]' _ "$(reconciles_of "$standby")"
# --- e. a frozen leader writes nothing after it lost the Lease -------------------------
frozen="$standby"
log "e. split brain: SIGSTOP the leader $frozen past its lease, a standby takes over, SIGCONT"
audit="$(bash hack/cluster.sh audit-log)"
# audit_writes AGENT [SINCE]: writes in the audit log by the operator whose user
# agent names AGENT ("multivac-operator/VERSION (AGENT)"), received at or after
# SINCE (RFC 3339) when given.
audit_writes() {
  python3 - "$audit" "$1" "${2:-}" <<'PY'
import json, sys
from datetime import datetime
path, who, since = sys.argv[1:4]
at = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
n = 0
for line in open(path):
    e = json.loads(line)
    if e.get("stage") != "ResponseComplete" or not e.get("userAgent", "").endswith(f"({who})"):
        continue
    if e["verb"] in ("get", "list", "watch"):
        continue
    if since and at(e["requestReceivedTimestamp"]) < at(since):
        continue
    n += 1
print(n)
PY
}
start_operator op-c "$work/kust-sa.kubeconfig" "$kust_ns"
check "op-c stands by" wait_until 20 leader_gauge_is op-c 0
some_writes() { local n; n="$(audit_writes "$1")"; echo "$n writes"; [ "$n" -gt 0 ]; }
no_writes_since() { local n; n="$(audit_writes "$1" "$2")"; echo "$n writes"; [ "$n" -eq 0 ]; }
check "audit log: the leader's writes are there, with its user agent" some_writes "$frozen"
kill -STOP "${op_pid[$frozen]}"
holds() { [ "$(holder "$kust_ns")" = "$1" ]; }
check "op-c takes the Lease from the frozen $frozen within ${lease_seconds} s + 10 s" \
  wait_until $((lease_seconds + 10)) holds op-c
takeover="$(k -n "$kust_ns" get lease "$lease" -o jsonpath='{.spec.acquireTime}')"
apply_sample mv-leader third >/dev/null
check "MultiVac created while $frozen is frozen is Ready (op-c reconciles)" ready mv-leader third
# Work nobody does: op-c dies (its Lease stays valid for up to ${lease_seconds} s)
# and a new MultiVac waits in the frozen leader's watch. Without the fence, the
# resumed leader reconciles it before its lease manager sees the loss.
kill -9 "${op_pid[op-c]}"
wait "${op_pid[op-c]}" 2>/dev/null || true
apply_sample mv-leader fourth >/dev/null
kill -CONT "${op_pid[$frozen]}"
gone() { local st; st="$(ps -o stat= -p "$1" 2>/dev/null)"; [ -z "$st" ] || [[ "$st" == Z* ]]; }
exited_non_zero() {
  wait_until 30 gone "${op_pid[$frozen]}" || return 1
  local rc=0; wait "${op_pid[$frozen]}" || rc=$?
  echo "exit status $rc"; [ "$rc" -ne 0 ]
}
check "the resumed $frozen steps down: exits non-zero" exited_non_zero
log "$frozen: $(grep -c 'refused ' "$work/$frozen.log" || true) writes refused by the fence after SIGCONT"
check "audit log: $frozen wrote nothing at or after the takeover ($takeover)" \
  no_writes_since "$frozen" "$takeover"
check "nothing built for the MultiVac only the stale leader saw" \
  refused k -n mv-leader get deployment fourth-server

stop_operator op-a
stop_operator op-b
stop_operator op-c

# --- f. uninstalling with kustomize -------------------------------------------------------
log "f. kubectl delete -k config/default"
check "kubectl delete -k config/default" k delete -k config/default --wait=false
check "kubectl delete -k config/default leaves the CRD" crd_intact
for target in mv-kustomize/"$mv_name" mv-leader/first mv-leader/second mv-leader/third; do
  check "kubectl delete -k config/default leaves MultiVac $target and its PVCs" multivac_intact "${target%/*}" "${target#*/}"
done

check_summary install
