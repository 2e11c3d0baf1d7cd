#!/usr/bin/env bash
# Acceptance tests of the local control plane (issue 3), run by hack/test.sh
# after `hack/cluster.sh up` with KUBECONFIG set. Each test proves that one real
# component does its job: kwok (nodes and pod lifecycle), controller-manager
# (Deployment -> ReplicaSet -> Pods, garbage collection), scheduler (binding),
# the API server's Pod Security admission, and the volume provisioner behind
# the default StorageClass. Each runs in its own namespace with bounded waits;
# the last line is `cluster: N passed, M failed`. Run it on the machine of the
# cluster: the volume test looks at the directories the provisioner made.
set -uo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"

KUBECTL="$(cluster_bin_dir)/kubectl"
[ -x "$KUBECTL" ] || die "no kubectl in $(cluster_bin_dir): run \`bash hack/cluster.sh build\`"
[ -n "${KUBECONFIG:-}" ] || die "KUBECONFIG is not set: run \`bash hack/cluster.sh up && eval \"\$(bash hack/cluster.sh env)\"\`"
"$KUBECTL" get --raw /readyz >/dev/null 2>&1 \
  || die "the API server in $KUBECONFIG does not answer /readyz: run \`bash hack/cluster.sh up\` (and check \`bash hack/cluster.sh status\`)"

mapfile -t NODES < <(cluster_kwok_nodes)
# Bound of every wait, in seconds (generous for 2 shared cores).
WAIT_S="${MULTIVAC_CLUSTER_WAIT:-60}"
WAIT="${WAIT_S}s"
k() { "$KUBECTL" "$@"; }
indent() { sed 's/^/    /'; }

# fail MESSAGE: ends the current test (a subshell) with MESSAGE.
fail() { echo "    $*" >&2; exit 1; }

# within SECONDS COMMAND...: polls COMMAND until it succeeds; false once
# SECONDS have passed.
within() {
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# until_true SECONDS WHAT COMMAND...: polls COMMAND until it succeeds or fails
# the test after SECONDS.
until_true() {
  local secs="$1" what="$2"; shift 2
  within "$secs" "$@" || fail "timed out after ${secs}s waiting for $what"
}

# A pod spec that the restricted Pod Security level admits.
restricted_container() {
  cat <<'EOF'
        image: registry.k8s.io/pause:3.10
        securityContext:
          allowPrivilegeEscalation: false
          runAsNonRoot: true
          runAsUser: 65534
          capabilities: {drop: [ALL]}
          seccompProfile: {type: RuntimeDefault}
EOF
}

deployment() { # NAME REPLICAS
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, labels: {app: $1}}
spec:
  replicas: $2
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      containers:
      - name: main
$(restricted_container)
EOF
}

# ---- tests ----------------------------------------------------------------------

test_nodes_ready() {
  local out n
  out="$(k get nodes -l type=kwok)" || fail "kubectl get nodes failed"
  echo "$out" | indent
  for n in "${NODES[@]}"; do
    echo "$out" | grep -qE "^${n}[[:space:]]+Ready[[:space:]]" || fail "node $n is not listed as Ready"
  done
}

test_deployment_runs() {
  local ns="$1"
  deployment web 2 | k -n "$ns" apply -f - >/dev/null
  k -n "$ns" wait deployment/web --for=condition=Available --timeout="$WAIT" >/dev/null \
    || fail "Deployment web did not become Available: $(k -n "$ns" get deploy,rs,pods -o wide 2>&1)"
  local rs owner
  rs="$(k -n "$ns" get rs -l app=web -o jsonpath='{.items[*].metadata.name}')"
  [ -n "$rs" ] || fail "no ReplicaSet for Deployment web (controller-manager)"
  owner="$(k -n "$ns" get rs "$rs" -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')"
  [ "$owner" = Deployment/web ] || fail "ReplicaSet $rs is owned by '$owner', want Deployment/web"
  k -n "$ns" wait pods -l app=web --for=condition=Ready --timeout="$WAIT" >/dev/null \
    || fail "the pods did not become Ready: $(k -n "$ns" get pods -o wide 2>&1)"
  local lines
  lines="$(k -n "$ns" get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.ownerReferences[0].name}{"\n"}{end}')"
  echo "$lines" | indent
  [ "$(echo "$lines" | grep -c .)" -eq 2 ] || fail "want 2 pods, got: $lines"
  local name node phase podowner
  while read -r name node phase podowner; do
    [[ " ${NODES[*]} " == *" $node "* ]] || fail "pod $name is bound to '$node', not to a kwok node (scheduler)"
    [ "$phase" = Running ] || fail "pod $name is $phase, want Running (kwok)"
    [ "$podowner" = "$rs" ] || fail "pod $name is owned by '$podowner', want ReplicaSet $rs"
  done <<< "$lines"
}

cm_uid() { k -n "$1" get configmap "$2" -o jsonpath='{.metadata.uid}'; }
gone() { # NAMESPACE KIND SELECTOR-OR-NAME...: true when nothing matches
  [ -z "$(k -n "$1" get "${@:2}" -o name --ignore-not-found 2>/dev/null)" ]
}

test_garbage_collection() {
  local ns="$1" uid
  # An owner ConfigMap and a dependent that names it in ownerReferences.
  k -n "$ns" create configmap owner --from-literal=role=owner >/dev/null
  uid="$(cm_uid "$ns" owner)"
  k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: $uid}
data: {role: dependent}
EOF
  k -n "$ns" create configmap bystander --from-literal=role=unowned >/dev/null
  k -n "$ns" delete configmap owner --wait=true >/dev/null
  until_true "$WAIT_S" "the dependent ConfigMap to be garbage-collected" gone "$ns" configmap dependent
  k -n "$ns" get configmap bystander >/dev/null 2>&1 || fail "the unowned ConfigMap was deleted too"

  # Foreground deletion of a Deployment removes its ReplicaSet and Pods first.
  deployment gc 2 | k -n "$ns" apply -f - >/dev/null
  k -n "$ns" wait deployment/gc --for=condition=Available --timeout="$WAIT" >/dev/null \
    || fail "Deployment gc did not become Available"
  k -n "$ns" delete deployment gc --cascade=foreground --timeout="$WAIT" >/dev/null \
    || fail "foreground deletion of Deployment gc did not finish"
  until_true "$WAIT_S" "the ReplicaSet of Deployment gc to be garbage-collected" gone "$ns" rs -l app=gc
  until_true "$WAIT_S" "the Pods of Deployment gc to be garbage-collected" gone "$ns" pods -l app=gc
}

privileged_pod() {
  cat <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
  - name: main
    image: registry.k8s.io/pause:3.10
    securityContext: {privileged: true}
EOF
}

test_pod_security() {
  local ns="$1" open="$1-open" out
  k label namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
  if out="$(privileged_pod | k -n "$ns" apply -f - 2>&1)"; then
    fail "a privileged pod was admitted into a restricted namespace: $out"
  fi
  echo "$out" | grep -q 'violates PodSecurity "restricted' || fail "the privileged pod was rejected, but not by Pod Security: $out"
  echo "    rejected: $(echo "$out" | cut -c1-140)..."
  k -n "$ns" apply -f - >/dev/null <<EOF || fail "a compliant pod was rejected from the restricted namespace"
apiVersion: v1
kind: Pod
metadata: {name: compliant}
spec:
  containers:
  - name: main
$(restricted_container | sed 's/^    //')
EOF
  k -n "$ns" wait pod/compliant --for=condition=Ready --timeout="$WAIT" >/dev/null || fail "the compliant pod did not become Ready"
  # The same privileged pod is admitted where the namespace allows it, so the
  # rejection above came from the namespace's label.
  k create namespace "$open" >/dev/null
  k label namespace "$open" pod-security.kubernetes.io/enforce=privileged >/dev/null
  local rc=0
  out="$(privileged_pod | k -n "$open" apply -f - 2>&1)" || rc=$?
  k delete namespace "$open" --wait=false >/dev/null 2>&1
  [ $rc -eq 0 ] || fail "a privileged pod was rejected even from a privileged namespace: $out"
}

pvc() { # NAME [STORAGECLASS]
  cat <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1}
spec:
  ${2:+storageClassName: $2}
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF
}
pvc_field() { k -n "$1" get pvc "$2" -o jsonpath="{$3}"; }
pv_field() { k get pv "$1" -o jsonpath="{$2}" 2>/dev/null; }
pvc_bound() { [ "$(pvc_field "$1" "$2" .status.phase)" = Bound ]; }
pv_phase_is() { [ "$(pv_field "$1" .status.phase)" = "$2" ]; }
pv_gone() { local out; out="$(k get pv "$1" -o name --ignore-not-found)" && [ -z "$out" ]; }

# bind_within NS PVC: waits for the claim to be Bound and prints the time it
# took; fails the test with the claim's events when it is not.
bind_within() {
  local t0; t0=$(date +%s%N)
  within "$WAIT_S" pvc_bound "$1" "$2" \
    || fail "PVC $2 is still $(pvc_field "$1" "$2" .status.phase) after ${WAIT_S}s: is the provisioner running (\`bash hack/cluster.sh status\`, logs/provisioner.log)? events: $(k -n "$1" get events --field-selector "involvedObject.name=$2" -o jsonpath='{range .items[*]}{.reason}: {.message}; {end}')"
  echo "    PVC $2 Bound $(( ($(date +%s%N) - t0) / 1000000 )) ms after it was created"
}

# A claim that names no class gets the default class, and the provisioner binds
# it to a new directory on this machine, writable by the volume's group only.
# Deleting a claim follows its class' reclaim policy: the default class retains
# the volume and its data, multivac-local-delete removes both.
test_dynamic_volume() {
  local ns="$1" class pv dir gid
  class="$(k get storageclass -o jsonpath='{range .items[?(@.metadata.annotations.storageclass\.kubernetes\.io/is-default-class=="true")]}{.metadata.name}{" "}{.reclaimPolicy}{"\n"}{end}')"
  [ "$class" = "multivac-local Retain" ] || fail "want one default StorageClass, multivac-local with reclaimPolicy Retain; got: '$class'"
  pvc data | k -n "$ns" apply -f - >/dev/null
  bind_within "$ns" data
  [ "$(pvc_field "$ns" data .spec.storageClassName)" = multivac-local ] \
    || fail "the claim got class '$(pvc_field "$ns" data .spec.storageClassName)', not the default multivac-local"
  pv="$(pvc_field "$ns" data .spec.volumeName)"
  [ "$(pv_field "$pv" '.metadata.annotations.pv\.kubernetes\.io/provisioned-by')" = multivac.local/hostpath ] \
    || fail "PV $pv was not made by the provisioner: $(k get pv "$pv" -o yaml)"
  dir="$(pv_field "$pv" .spec.hostPath.path)" gid="$(pv_field "$pv" '.metadata.annotations.pv\.beta\.kubernetes\.io/gid')"
  [ -d "$dir" ] || fail "the volume's directory '$dir' does not exist on this machine"
  echo "    $pv: $dir, mode and group $(stat -c '%a %g' "$dir"), pv.beta.kubernetes.io/gid $gid"
  if [ "$(id -u)" -eq 0 ]; then
    [ "$(stat -c '%a %g' "$dir")" = "2770 $gid" ] || fail "want mode 2770 and group $gid (the PV's gid annotation) on $dir"
  fi
  k -n "$ns" delete pvc data --wait=true >/dev/null
  until_true "$WAIT_S" "PV $pv to turn Released" pv_phase_is "$pv" Released
  [ -d "$dir" ] || fail "the Retain class' directory $dir was deleted with its claim"
  k delete pv "$pv" >/dev/null   # the object only: a retained directory stays until \`down\`

  pvc scratch multivac-local-delete | k -n "$ns" apply -f - >/dev/null
  bind_within "$ns" scratch
  pv="$(pvc_field "$ns" scratch .spec.volumeName)"
  dir="$(pv_field "$pv" .spec.hostPath.path)"
  [ -d "$dir" ] || fail "the volume's directory '$dir' does not exist on this machine"
  k -n "$ns" delete pvc scratch --wait=true >/dev/null
  until_true "$WAIT_S" "PV $pv of the Delete class to be deleted" pv_gone "$pv"
  [ ! -e "$dir" ] || fail "PV $pv is gone but its directory $dir is still there"
}

# ---- runner ---------------------------------------------------------------------

# in_namespace FUNCTION NAMESPACE: runs one test in a namespace of its own,
# stopping at its first failing command (errexit works in the subshell because
# check runs it outside any condition), then removes the namespace.
in_namespace() {
  local fn="$1" ns="$2" rc
  k create namespace "$ns" >/dev/null || { echo "could not create namespace $ns"; return 1; }
  ( set -e; "$fn" "$ns" )
  rc=$?
  k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  return "$rc"
}

for t in nodes-ready deployment-runs garbage-collection pod-security dynamic-volume; do
  check "$t" in_namespace "test_${t//-/_}" "acc-$t-$$"
done

check_summary cluster
