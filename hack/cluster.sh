#!/usr/bin/env bash
# A real local Kubernetes control plane for tests and local runs: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kwok (simulated
# nodes and pod lifecycle) and a dynamic volume provisioner behind the default
# StorageClass, all built from the pinned Go modules in hack/cluster and run on
# free loopback ports, so several clusters can run side by side.
#
#   hack/cluster.sh build        build the binaries into the cache (once)
#   hack/cluster.sh up           start a cluster in $MULTIVAC_CLUSTER_STATE
#   hack/cluster.sh up --real-node
#                                the same plus one real node (containerd, kubelet,
#                                kube-proxy, CoreDNS): see hack/node/node.sh
#   hack/cluster.sh down         stop exactly what `up` started, remove the state
#   hack/cluster.sh status       which components run, and the API server URL
#   hack/cluster.sh kubeconfig   print the admin kubeconfig's path
#   hack/cluster.sh env          print `export` lines for eval (KUBECONFIG, PATH)
#   hack/cluster.sh sa-kubeconfig NAMESPACE SERVICEACCOUNT
#                                print the path of a kubeconfig that holds a token
#                                of that ServiceAccount (least-privilege tests)
#
# State (certificates, etcd data, kubeconfigs, volumes/, logs/, pids/) lives in
# MULTIVAC_CLUSTER_STATE (default ${TMPDIR:-/tmp}/multivac-cluster).
#
# The kwok nodes are sized by MULTIVAC_KWOK_NODES (how many, default 2) and
# MULTIVAC_KWOK_NODE_PODS / _CPU / _MEMORY (each one's capacity, default 8000
# pods, 512 CPUs, 1Ti): together room for 1,000 MultiVacs with managed stores
# at their maximum worker count (see hack/cluster/README.md).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"

STATE="${MULTIVAC_CLUSTER_STATE:-${TMPDIR:-/tmp}/multivac-cluster}"
BIN="$(cluster_bin_dir)"
MARKER="$STATE/.multivac-cluster"
# Components in start order; `down` stops them in reverse. A later node with a
# real kubelet adds its components here and a start_<name> function below.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok provisioner)
KWOK_NODE_PODS="${MULTIVAC_KWOK_NODE_PODS:-8000}"
KWOK_NODE_CPU="${MULTIVAC_KWOK_NODE_CPU:-512}"
KWOK_NODE_MEMORY="${MULTIVAC_KWOK_NODE_MEMORY:-1Ti}"
NODES=()   # kwok-node-0 ... set by `up` (kwok_nodes)
# The dynamic provisioner's name, as the StorageClasses give it.
PROVISIONER=multivac.local/hostpath
UP_TIMEOUT="${MULTIVAC_CLUSTER_TIMEOUT:-90}"
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
POD_CIDR=10.244.0.0/16

kubectl_() { "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

pid_of() { cat "$STATE/pids/$1.pid" 2>/dev/null || true; }

# alive NAME: the recorded process runs and is ours (its command line names the
# state folder), so a recycled PID is never mistaken for a component.
alive() {
  local pid; pid="$(pid_of "$1")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$STATE/"
}

# run NAME BINARY ARGS...: starts a component in the background, detached from
# the caller's terminal and output (a `$(hack/cluster.sh up)` must not hang),
# its output in logs/NAME.log, its PID in pids/NAME.pid.
run() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$STATE/logs/$name.log" 2>&1 &
  echo $! > "$STATE/pids/$name.pid"
}

# ---- certificates -----------------------------------------------------------

# cert NAME SUBJECT EXTENSIONS: a key and a certificate signed by the cluster CA.
cert() {
  local name="$1" subj="$2" ext="$3" pki="$STATE/pki"
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

gen_pki() {
  local pki="$STATE/pki" client="keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  mkdir -p "$pki" && chmod 700 "$pki"
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=multivac-local-ca" -days 365 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=multivac-admin" "$client"
  cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  # The aggregation layer's client: the API server proxies to extension API
  # servers with it, and controller-manager and scheduler find its CA in
  # kube-system/extension-apiserver-authentication for delegated authentication.
  cert front-proxy-client "/CN=front-proxy-client" "$client"
  # kwok stands in for every kubelet; the Node authorizer only lets a kubelet
  # touch its own node, so it acts as a cluster admin like kwokctl's does.
  cert kwok "/O=system:masters/CN=kwok" "$client"
  # The volume provisioner, bound to its own least-privilege ClusterRole.
  cert provisioner "/CN=multivac:provisioner" "$client"
  # Service-account tokens are signed with this key (controller-manager) and
  # verified with its public half (apiserver).
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# kubeconfig FILE USER: a kubeconfig for the API server that embeds the CA and
# USER's client certificate, so it stays valid when copied elsewhere.
kubeconfig() {
  local file="$1" user="$2" pki="$STATE/pki"
  cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: multivac
  cluster:
    server: $(cat "$STATE/apiserver-url")
    certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$pki/$user.crt")
    client-key-data: $(base64 -w0 < "$pki/$user.key")
contexts:
- name: multivac
  context:
    cluster: multivac
    user: $user
    namespace: default
current-context: multivac
EOF
  chmod 600 "$file"
}

# free_ports N prints N distinct loopback ports that nothing listens on, picked
# at random BELOW the kernel's ephemeral range: the components bind them seconds
# later, and meanwhile every outgoing connection takes an ephemeral port, which
# could be one picked from that range.
free_ports() {
  python3 -c '
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
want, got = int(sys.argv[1]), []
while len(got) < want:
    p = random.randrange(10000, low)
    if p in got: continue
    s = socket.socket()
    try: s.bind(("127.0.0.1", p)); got.append(p)
    except OSError: pass
    finally: s.close()
print("\n".join(map(str, got)))' "$1"
}

# ---- components ---------------------------------------------------------------

start_etcd() {
  mkdir -p "$STATE/etcd" && chmod 700 "$STATE/etcd"
  # No fsync: the data is thrown away with the cluster, and fsync dominates
  # etcd's latency on a shared disk.
  run etcd "$BIN/etcd" --name default --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
}

start_kube-apiserver() {
  local pki="$STATE/pki"
  # PodSecurity and NodeRestriction on top of the default admission plugins;
  # privileged pods are allowed by the server so that Pod Security admission,
  # namespace by namespace, is what decides.
  # No endpoint reconciler: it refuses a loopback address, and no pod here
  # reaches the API server through the `kubernetes` Service anyway.
  run kube-apiserver "$BIN/kube-apiserver" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --cert-dir "$STATE/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --requestheader-client-ca-file "$pki/ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction,PodSecurity \
    --allow-privileged=true \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --profiling=false
}

# The controllers' and the scheduler's clients are not rate-limited here (the
# numbers kwokctl uses to lift the limits; the API server's priority and
# fairness still protects it): at controller-manager's default 20 requests/s
# the PV controller bound 200 pre-made claims in 59.65 s, 18.74 s without the
# limit (hack/bench/volumes.sh), and 1,000 MultiVacs make 2,000 claims.
API_QPS=5000 API_BURST=10000

start_kube-controller-manager() {
  local pki="$STATE/pki" kc="$STATE/kube-controller-manager.kubeconfig"
  kubeconfig "$kc" kube-controller-manager
  run kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --kube-api-qps "$API_QPS" --kube-api-burst "$API_BURST" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$STATE/kube-controller-manager" \
    --leader-elect=false --controllers '*' --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
}

start_kube-scheduler() {
  local kc="$STATE/kube-scheduler.kubeconfig"
  kubeconfig "$kc" kube-scheduler
  # The client's rate and leader election are only settable in the config
  # file (their flags are deprecated and ignored beside one).
  cat > "$STATE/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: "$kc", qps: $API_QPS, burst: $API_BURST}
leaderElection: {leaderElect: false}
EOF
  run kube-scheduler "$BIN/kube-scheduler" --config "$STATE/kube-scheduler.yaml" \
    --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --cert-dir "$STATE/kube-scheduler" \
    --profiling=false
}

start_kwok() {
  local kc="$STATE/kwok.kubeconfig"
  kubeconfig "$kc" kwok
  mkdir -p "$STATE/kwok"
  # HOME points into the state so a ~/.kwok/kwok.yaml never changes the
  # cluster's behaviour; the stages come from the pinned kwok module.
  HOME="$STATE/kwok" run kwok "$BIN/kwok" \
    --kubeconfig "$kc" --config "$(cluster_kwok_stages)" \
    --manage-all-nodes=false --manage-nodes-with-label-selector type=kwok \
    --cidr "$POD_CIDR" --node-ip 10.0.0.1 \
    --node-lease-duration-seconds 40 \
    --server-address "127.0.0.1:$KWOK_PORT"
}

# storage: the provisioner's rights (what sig-storage-lib-external-provisioner
# calls: claims, volumes and classes read through informers, volumes created
# and deleted, events recorded) and its two StorageClasses. The default one
# retains a volume whose claim is deleted (its PV turns Released, its directory
# stays until `down`): deleting a claim, or a namespace, never deletes data by
# surprise. multivac-local-delete is for throwaway volumes: a deleted claim
# takes its PV and directory with it. Immediate binding: a claim is bound as
# soon as it exists, with no node to wait for (the volumes carry no node
# affinity: the real node, when there is one, is the only node pods run on).
storage() {
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "multivac:provisioner"}
rules:
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "multivac:provisioner"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "multivac:provisioner"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "multivac:provisioner"}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: multivac-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: $PROVISIONER
reclaimPolicy: Retain
volumeBindingMode: Immediate
parameters: {gidMin: "300000", gidMax: "349999"}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: multivac-local-delete
provisioner: $PROVISIONER
reclaimPolicy: Delete
volumeBindingMode: Immediate
parameters: {gidMin: "350000", gidMax: "399999"}
EOF
}

start_provisioner() {
  local kc="$STATE/provisioner.kubeconfig"
  kubeconfig "$kc" provisioner
  run provisioner "$BIN/provisioner" --kubeconfig "$kc" --root "$STATE/volumes" --name "$PROVISIONER" \
    --kube-api-qps "$API_QPS" --kube-api-burst "$API_BURST"
}

# kwok_nodes checks the sizing variables and names the nodes. CPU and memory
# are quantities: the API server refuses a bad one when the node is created.
kwok_nodes() {
  [[ "${MULTIVAC_KWOK_NODES:-2}" =~ ^[1-9][0-9]*$ ]] || die "MULTIVAC_KWOK_NODES must be a whole number of nodes, at least 1 (got '$MULTIVAC_KWOK_NODES')"
  [[ "$KWOK_NODE_PODS" =~ ^[1-9][0-9]*$ ]] || die "MULTIVAC_KWOK_NODE_PODS must be a whole number of pods, at least 1 (got '$KWOK_NODE_PODS')"
  mapfile -t NODES < <(cluster_kwok_nodes)
}

# register_nodes creates the simulated nodes kwok manages (label type=kwok),
# untainted so ordinary workloads schedule on them.
register_nodes() {
  local n
  for n in "${NODES[@]}"; do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
status:
  allocatable: {cpu: "$KWOK_NODE_CPU", memory: "$KWOK_NODE_MEMORY", pods: "$KWOK_NODE_PODS", ephemeral-storage: 100Gi}
  capacity: {cpu: "$KWOK_NODE_CPU", memory: "$KWOK_NODE_MEMORY", pods: "$KWOK_NODE_PODS", ephemeral-storage: 100Gi}
EOF
  done | kubectl_ apply -f - >/dev/null
}

# ---- waiting and failing --------------------------------------------------------

fail_up() {
  # Another process may take a picked port before the component binds it
  # (say, a second `up` at the same moment): start once more on other ports.
  if [ -z "${MULTIVAC_CLUSTER_RETRY:-}" ] && grep -qs 'address already in use' "$STATE"/logs/*.log; then
    log "a picked port was taken meanwhile: starting again on other ports"
    stop_components
    rm -rf "$STATE"
    MULTIVAC_CLUSTER_RETRY=1 exec bash "$MULTIVAC_ROOT/hack/cluster.sh" up
  fi
  printf '\nerror: the control plane did not come up: %s\n' "$*" >&2
  local c
  for c in "${COMPONENTS[@]}"; do
    [ -f "$STATE/logs/$c.log" ] || continue
    if alive "$c"; then echo "--- $c (running), last lines of $STATE/logs/$c.log:" >&2
    else echo "--- $c (NOT running), last lines of $STATE/logs/$c.log:" >&2; fi
    tail -n 15 "$STATE/logs/$c.log" >&2
  done
  echo >&2
  echo "logs: $STATE/logs/{$(IFS=,; echo "${COMPONENTS[*]}")}.log" >&2
  stop_components
  echo "the components were stopped; the logs stay until \`MULTIVAC_CLUSTER_STATE=$STATE bash hack/cluster.sh down\`" >&2
  exit 1
}

deadline=0
start_ms=0
# step WHAT: one line of progress with the time since `up` started.
step() {
  local ms=$(( $(date +%s%N) / 1000000 - start_ms ))
  printf '    %3d.%01d s  %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$1" >&2
}
# wait_for WHAT COMMAND...: polls COMMAND until it succeeds, failing `up` with the
# logs when a component died or the deadline passed.
wait_for() {
  local what="$1"; shift
  until "$@" >/dev/null 2>&1; do
    local c
    for c in "${COMPONENTS[@]}"; do
      if [ -f "$STATE/pids/$c.pid" ] && ! alive "$c"; then fail_up "$c exited while waiting for $what"; fi
    done
    [ "$(date +%s)" -lt "$deadline" ] || fail_up "timed out after ${UP_TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

nodes_ready() {
  local n
  for n in "${NODES[@]}"; do
    [ "$(kubectl_ get node "$n" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ] || return 1
  done
}

# ---- commands -----------------------------------------------------------------

cmd_build() {
  bash "$MULTIVAC_ROOT/hack/cluster/build.sh" >/dev/null
  bash "$MULTIVAC_ROOT/hack/cluster/provisioner/build.sh" >/dev/null
}

cmd_up() {
  [ $# -eq 0 ] || die "up takes no arguments (got: $*)"
  if [ -f "$MARKER" ]; then
    local c running=0
    for c in "${COMPONENTS[@]}"; do alive "$c" && running=$((running + 1)); done
    if [ "$running" -eq "${#COMPONENTS[@]}" ]; then
      log "the cluster in $STATE is already up: $(cat "$STATE/apiserver-url")"; return 0
    fi
    [ "$running" -eq 0 ] || die "the cluster in $STATE is partly running: run \`MULTIVAC_CLUSTER_STATE=$STATE bash hack/cluster.sh down\` first"
    rm -rf "$STATE"   # a stopped cluster of ours: start afresh
  elif [ -d "$STATE" ] && [ -n "$(ls -A "$STATE")" ]; then
    die "$STATE is not empty and is not a cluster state folder: set MULTIVAC_CLUSTER_STATE to a new or empty folder"
  fi
  kwok_nodes
  apt_install openssl python3
  cmd_build
  start_ms=$(( $(date +%s%N) / 1000000 ))
  deadline=$(( $(date +%s) + UP_TIMEOUT ))
  mkdir -p "$STATE/logs" "$STATE/pids"
  touch "$MARKER"

  local ports; mapfile -t ports < <(free_ports 6)
  ETCD_PORT=${ports[0]} ETCD_PEER_PORT=${ports[1]} APISERVER_PORT=${ports[2]}
  KCM_PORT=${ports[3]} SCHEDULER_PORT=${ports[4]} KWOK_PORT=${ports[5]}
  echo "https://127.0.0.1:$APISERVER_PORT" > "$STATE/apiserver-url"

  log "starting a control plane ($K8S_VERSION) in $STATE"
  start_etcd
  gen_pki
  step "certificates"
  start_kube-apiserver
  kubeconfig "$STATE/kubeconfig" admin
  wait_for "kube-apiserver /readyz" kubectl_ get --raw /readyz
  step "kube-apiserver ready"
  start_kube-controller-manager
  start_kube-scheduler
  start_kwok
  storage
  start_provisioner
  register_nodes
  wait_for "the kwok nodes to be Ready" nodes_ready
  step "nodes ready"
  wait_for "the default ServiceAccount (controller-manager)" kubectl_ -n default get serviceaccount default
  local ms=$(( $(date +%s%N) / 1000000 - start_ms ))
  log "cluster up in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s: $(cat "$STATE/apiserver-url")"
  echo "  export KUBECONFIG=$STATE/kubeconfig" >&2
}

stop_components() {
  local i c pid
  for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do
    c="${COMPONENTS[$i]}"
    if alive "$c"; then kill -TERM "$(pid_of "$c")" 2>/dev/null || true; fi
  done
  for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do
    c="${COMPONENTS[$i]}"
    local tries=0
    while alive "$c" && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
    if alive "$c"; then pid="$(pid_of "$c")"; kill -KILL "$pid" 2>/dev/null || true; fi
    while alive "$c"; do sleep 0.1; done
    rm -f "$STATE/pids/$c.pid"
  done
}

cmd_down() {
  if [ ! -d "$STATE" ]; then log "no cluster in $STATE"; return 0; fi
  [ -f "$MARKER" ] || die "$STATE is not a cluster state folder (no $MARKER): not touching it"
  stop_components
  rm -rf "$STATE"
  log "cluster in $STATE stopped and removed"
}

cmd_status() {
  [ -f "$MARKER" ] || { echo "no cluster in $STATE (run: bash hack/cluster.sh up)"; return 1; }
  local c ok=0
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"
    else printf '%-24s stopped\n' "$c"; ok=1; fi
  done
  echo "apiserver: $(cat "$STATE/apiserver-url" 2>/dev/null)"
  echo "kubeconfig: $STATE/kubeconfig"
  return $ok
}

need_kubeconfig() {
  [ -f "$STATE/kubeconfig" ] || die "no cluster in $STATE: start one with \`bash hack/cluster.sh up\` (same MULTIVAC_CLUSTER_STATE)"
}

cmd_kubeconfig() { need_kubeconfig; echo "$STATE/kubeconfig"; }

cmd_env() {
  need_kubeconfig
  printf 'export KUBECONFIG=%q\n' "$STATE/kubeconfig"
  # shellcheck disable=SC2016 # $PATH is for the eval-ing shell to expand
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
}

cmd_sa-kubeconfig() {
  [ $# -eq 2 ] || die "usage: hack/cluster.sh sa-kubeconfig NAMESPACE SERVICEACCOUNT"
  need_kubeconfig
  local ns="$1" sa="$2" file token
  file="$STATE/sa-$ns-$sa.kubeconfig"
  token="$(kubectl_ -n "$ns" create token "$sa" --duration 24h)" \
    || die "could not get a token for ServiceAccount $ns/$sa (does it exist?)"
  cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: multivac
  cluster:
    server: $(cat "$STATE/apiserver-url")
    certificate-authority-data: $(base64 -w0 < "$STATE/pki/ca.crt")
users:
- name: $ns-$sa
  user:
    token: $token
contexts:
- name: multivac
  context:
    cluster: multivac
    user: $ns-$sa
    namespace: $ns
current-context: multivac
EOF
  chmod 600 "$file"
  echo "$file"
}

# ---- a real node (hack/node) ------------------------------------------------------

# real_node up|down|attach: `up --real-node` (or MULTIVAC_REAL_NODE=1, which
# survives the port-collision restart) adds one node that really runs
# containers beside the kwok nodes; `down` and `status` include it when the
# state holds one. Everything else is in hack/node/node.sh.
real_node() {
  # shellcheck source=hack/node/node.sh
  source "$MULTIVAC_ROOT/hack/node/node.sh"
  case "$1" in
    up) node_up ;;
    down) node_down ;;
    attach) if [ -f "$STATE/node/.real-node" ]; then COMPONENTS+=("${NODE_COMPONENTS[@]}"); fi ;;
  esac
}

case "${1:-}" in
  up)
    shift
    if [ "${1:-}" = --real-node ]; then shift; export MULTIVAC_REAL_NODE=1; fi
    cmd_up "$@"
    if [ "${MULTIVAC_REAL_NODE:-}" = 1 ]; then real_node up; fi ;;
  down|status) c="$1"; shift; real_node attach; [ "$c" = down ] && real_node down; "cmd_$c" "$@" ;;
  build|kubeconfig|env|sa-kubeconfig) c="$1"; shift; "cmd_$c" "$@" ;;
  *) die "usage: hack/cluster.sh build|up [--real-node]|down|status|kubeconfig|env|sa-kubeconfig NAMESPACE SA" ;;
esac
