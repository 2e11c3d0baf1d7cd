# shellcheck shell=bash
# A real node beside the kwok nodes: containerd + runc from Debian, a bridge
# CNI with host-local IPAM, kubelet and kube-proxy (iptables mode) built from
# the control plane's pinned k8s.io/kubernetes, kube-router's NetworkPolicy
# controller (iptables + ipset rules on the bridged traffic), CoreDNS for
# `<svc>.<ns>.svc` names, and a relay so pods reach the API server (which
# listens on loopback only) through the `kubernetes` Service.
#
# Sourced by hack/cluster.sh (after its helpers: STATE, BIN, run, alive, cert,
# kubeconfig, kubectl_, free_ports, wait_for); `hack/cluster.sh up --real-node`
# calls node_up, `down` calls node_down when the state holds a real node.
#
# Only one real node runs per machine: kube-proxy's iptables chains, the
# kubepods cgroups and the bridge are machine-wide. node_up refuses a second.

# shellcheck source=hack/node/containerd.sh
source "$MULTIVAC_ROOT/hack/node/containerd.sh"

NODE_NAME="${MULTIVAC_NODE_NAME:-multivac-node-0}"
NODE_BRIDGE=mvbr0
# The node's pod subnet: outside the kwok nodes' 10.244.0.0/16 (their pod IPs
# are fake, but they must never collide with a real pod's).
NODE_POD_SUBNET=10.245.0.0/24
NODE_GATEWAY=10.245.0.1
NODE_LOCK=/run/multivac-real-node.state
# shellcheck disable=SC2034 # read by hack/node/containerd.sh
NODE_PAUSE_IMAGE="multivac.local/pause:3.10"
# Stop order is the reverse of this.
NODE_COMPONENTS=(containerd apiserver-relay coredns kubelet kube-proxy kube-router)

node_dir() { echo "$STATE/node"; }

# node_ip prints the address of the interface that holds the default route:
# the kubelet registers it as InternalIP, and the API server reaches the
# kubelet there (logs, exec).
node_ip() { ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1; }

# node_preflight fails early, with the exact reason, when this machine cannot
# run a real node.
node_preflight() {
  [ "$(id -u)" -eq 0 ] || die "a real node needs root (containers, cgroups, iptables, network namespaces)"
  [ -d /sys/fs/cgroup ] || die "no /sys/fs/cgroup: cgroups are not mounted"
  if [ -f "$NODE_LOCK" ] && [ "$(cat "$NODE_LOCK")" != "$STATE" ]; then
    local other; other="$(cat "$NODE_LOCK")"
    if [ -f "$other/pids/kubelet.pid" ] && kill -0 "$(cat "$other/pids/kubelet.pid")" 2>/dev/null; then
      die "a real node already runs for the cluster in $other (one per machine): MULTIVAC_CLUSTER_STATE=$other bash hack/cluster.sh down"
    fi
  fi
  apt_install containerd runc containernetworking-plugins iptables ipset conntrack socat gcc libc6-dev
  bash "$MULTIVAC_ROOT/hack/node/build.sh" >/dev/null
}

# node_network: forwarding, bridged traffic through iptables (kube-proxy's
# DNAT replies between two pods on the bridge), and the bridge itself created
# up front with the gateway address, so CoreDNS and the relay can bind it
# before the first pod exists.
node_network() {
  sysctl -qw net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] \
    || die "net.bridge.bridge-nf-call-iptables is missing (kernel module br_netfilter): Services cannot route between pods on the bridge"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "$NODE_GATEWAY/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Service addresses are virtual: kube-proxy rewrites them to pod addresses.
  # A packet it has no rule for (yet, or any more) goes to the bridge, never
  # out of the machine by the default route. Removed with the bridge.
  ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE"
  mkdir -p "$(node_dir)/cni/net.d" "$(node_dir)/cni/ipam"
  # hairpinMode: a pod reaching itself through its own Service.
  cat > "$(node_dir)/cni/net.d/10-multivac.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "multivac",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_SUBNET", "gateway": "$NODE_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$(node_dir)/cni/ipam"
      }
    }
  ]
}
EOF
}

# node_credentials: client certificates signed by the cluster CA, no bootstrap
# tokens: the kubelet as system:node:<name> (group system:nodes, so the Node
# authorizer and NodeRestriction apply), kube-proxy as system:kube-proxy (bound
# to system:node-proxier by default), CoreDNS as its own user with a read-only
# ClusterRole.
node_credentials() {
  local client="keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  cert node "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  cert kube-proxy "/CN=system:kube-proxy" "$client"
  cert coredns "/CN=multivac:coredns" "$client"
  cert kube-router "/CN=multivac:kube-router" "$client"
  kubeconfig "$(node_dir)/kubelet.kubeconfig" node
  kubeconfig "$(node_dir)/kube-proxy.kubeconfig" kube-proxy
  kubeconfig "$(node_dir)/coredns.kubeconfig" coredns
  kubeconfig "$(node_dir)/kube-router.kubeconfig" kube-router
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "multivac:coredns"}
rules:
- apiGroups: [""]
  resources: [services, namespaces, pods]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "multivac:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "multivac:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "multivac:coredns"}
---
# kube-router starts informers on all of these even with only its firewall on.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "multivac:kube-router"}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "multivac:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "multivac:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "multivac:kube-router"}
EOF
}

# node_apiserver_relay: the API server binds 127.0.0.1 only, which a pod's
# network namespace cannot reach. socat relays the bridge gateway's port to it,
# and the `kubernetes` Service (ClusterIP 10.96.0.1, in the serving
# certificate) gets that address as its endpoint: in-cluster clients such as
# the operator pod then work unchanged.
node_apiserver_relay() {
  local api_port; api_port="$(sed 's/.*://' "$STATE/apiserver-url")"
  run apiserver-relay socat -lf "$STATE/logs/apiserver-relay.socat.log" \
    "TCP-LISTEN:$api_port,bind=$NODE_GATEWAY,fork,reuseaddr" "TCP:127.0.0.1:$api_port"
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: multivac-real-node
addressType: IPv4
endpoints:
- addresses: ["$NODE_GATEWAY"]
  conditions: {ready: true}
ports:
- {name: https, port: $api_port, protocol: TCP}
EOF
}

# node_coredns serves cluster.local from the API (Services, pods) on the bridge
# gateway, and forwards everything else to the host's resolver.
node_coredns() {
  cat > "$(node_dir)/Corefile" <<EOF
.:53 {
    bind $NODE_GATEWAY
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $(node_dir)/coredns.kubeconfig multivac
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 5
}
EOF
  run coredns "$BIN/coredns" -conf "$(node_dir)/Corefile"
}

# node_kubelet: cgroup v1 is refused by default since Kubernetes 1.35
# (failCgroupV1); this machine has only v1, so it is allowed explicitly. The
# cgroup driver is cgroupfs, as in containerd's runc options: containerd 1.6
# lacks the CRI RuntimeConfig call, so kubelet 1.37 uses this setting (it
# falls back to it and logs that the runtime should be updated).
node_kubelet() {
  local d; d="$(node_dir)"
  local ports; mapfile -t ports < <(free_ports 2)
  mkdir -p "$d/kubelet" "$d/pod-logs"
  printf 'nameserver %s\n' "$(sed -n 's/^nameserver //p' /etc/resolv.conf | head -1)" > "$d/resolv.conf"
  cat > "$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /
containerRuntimeEndpoint: unix://$d/containerd/containerd.sock
imageServiceEndpoint: unix://$d/containerd/containerd.sock
address: 127.0.0.1
port: ${ports[0]}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${ports[1]}
# The API server presents no client certificate to kubelets (it has no
# --kubelet-client-certificate), so it arrives anonymous: allowed here, on a
# port that listens on loopback only (node_hosts_entry).
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: "$STATE/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
clusterDNS: ["$NODE_GATEWAY"]
resolvConf: "$d/resolv.conf"
podLogsDir: "$d/pod-logs"
staticPodPath: ""
failSwapOn: false
protectKernelDefaults: false
serializeImagePulls: false
maxPods: 110
# Images are imported, never pulled: garbage-collecting them would lose them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
EOF
  run kubelet "$BIN/kubelet" --config "$d/kubelet.yaml" --kubeconfig "$d/kubelet.kubeconfig" \
    --root-dir "$d/kubelet" --cert-dir "$d/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$(node_ip)" \
    --node-labels "multivac.io/real-node=true" --v 1
}

# node_hosts_entry: the API server reaches a kubelet (logs, exec, port-forward)
# through the node's Hostname address first, i.e. the node name: this maps it
# to the loopback address the kubelet listens on. Marked, and removed by
# node_down. /etc/hosts is rewritten in place: it is often a bind mount.
NODE_HOSTS_MARK="# multivac-real-node"
node_hosts_entry() {
  local others; others="$(grep -vF "$NODE_HOSTS_MARK" /etc/hosts || true)"
  printf '%s\n127.0.0.1 %s %s %s\n' "$others" "$NODE_NAME" "$NODE_HOSTS_MARK" "$STATE" > /etc/hosts
}

node_hosts_remove() {
  local others; others="$(grep -vF "$NODE_HOSTS_MARK" /etc/hosts || true)"
  printf '%s\n' "$others" > /etc/hosts
}

node_kube_proxy() {
  local d; d="$(node_dir)"
  local ports; mapfile -t ports < <(free_ports 2)
  cat > "$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$d/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
clusterCIDR: $NODE_POD_SUBNET
healthzBindAddress: 127.0.0.1:${ports[0]}
metricsBindAddress: 127.0.0.1:${ports[1]}
# Leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false}
EOF
  run kube-proxy "$BIN/kube-proxy" --config "$d/kube-proxy.yaml"
}

# node_kube_router enforces NetworkPolicies for the pods on this node: kube-router
# with only its firewall controller (no routing, no service proxy, no CNI
# config: the bridge CNI and kube-proxy keep those jobs). Its rules see the
# bridged pod-to-pod traffic (br_netfilter, node_network) through iptables
# chains KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-* and ipsets KUBE-SRC-*,
# KUBE-DST-*; traffic from the node itself (probes, the e2e's requests) is
# always allowed. It reads its own Node object, so it starts once the kubelet
# has registered it.
node_kube_router() {
  local d; d="$(node_dir)"
  run kube-router "$BIN/kube-router" --kubeconfig "$d/kube-router.kubeconfig" \
    --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --enable-cni=false --enable-ipv4=true --enable-ipv6=false \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --health-port=0 --metrics-port=0 --v=1
}

# node_netpol_ready: kube-router has hooked its chain into FORWARD.
node_netpol_ready() { iptables-save -t filter 2>/dev/null | grep -q -- '^-A FORWARD .*-j KUBE-ROUTER-FORWARD'; }

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# node_up starts the real node for the running cluster in $STATE and waits
# until it is Ready. The kwok nodes get a NoSchedule taint, so workloads land
# on the node where containers really run.
node_up() {
  local start; start=$(date +%s)
  node_preflight
  local d; d="$(node_dir)"
  if [ -f "$d/.real-node" ] && alive kubelet; then log "the real node $NODE_NAME already runs"; return 0; fi
  mkdir -p "$d/containerd"
  touch "$d/.real-node"
  echo "$STATE" > "$NODE_LOCK"
  COMPONENTS+=("${NODE_COMPONENTS[@]}")
  # shellcheck disable=SC2034 # read by cluster.sh's wait_for
  deadline=$(( $(date +%s) + ${MULTIVAC_NODE_TIMEOUT:-120} ))
  log "starting a real node $NODE_NAME (containerd, kubelet, kube-proxy, kube-router, CoreDNS) in $d"
  node_network
  node_credentials
  NODE_STATE="$d" node_containerd_config "$d" > "$d/containerd/config.toml"
  run containerd containerd --config "$d/containerd/config.toml"
  wait_for "containerd" env NODE_STATE="$d" bash -c "source '$MULTIVAC_ROOT/hack/node/containerd.sh'; nctr version"
  bash "$MULTIVAC_ROOT/hack/images/build.sh" import "$d" pause >/dev/null
  node_apiserver_relay
  node_coredns
  node_hosts_entry
  node_kubelet
  node_kube_proxy
  wait_for "the real node $NODE_NAME to be Ready" node_ready
  node_kube_router
  wait_for "kube-router's NetworkPolicy chains" node_netpol_ready
  local n
  for n in "${NODES[@]}"; do
    kubectl_ taint node "$n" multivac.io/simulated=true:NoSchedule --overwrite >/dev/null
  done
  log "real node $NODE_NAME Ready in $(( $(date +%s) - start )) s (pods: $NODE_POD_SUBNET, DNS: $NODE_GATEWAY, NetworkPolicies: kube-router)"
}

# node_down stops the node's components and every container it started, and
# removes what it changed on the machine: mounts, the bridge, iptables rules,
# ipsets. Each step acts on everything at once and waits only for what is
# still there (it took about 110 s when it deleted each container's task in
# turn, retrying while containerd had already removed it).
node_down() {
  local d; d="$(node_dir)"
  [ -f "$d/.real-node" ] || return 0
  local c pid agents=(kube-router kube-proxy kubelet coredns apiserver-relay)
  # The machine-wide pieces (hosts line, iptables chains, ipsets, bridge)
  # belong to the state named in the lock; a stale state must not take them
  # from a newer node.
  local owner=1
  [ -f "$NODE_LOCK" ] && [ "$(cat "$NODE_LOCK")" != "$STATE" ] && owner=0
  # The agents first, so that nothing restarts a container or rewrites a rule.
  for c in "${agents[@]}"; do
    if alive "$c"; then kill -TERM "$(pid_of "$c")" 2>/dev/null || true; fi
  done
  node_wait_gone 5 "${agents[@]}"
  for c in "${agents[@]}"; do
    if alive "$c"; then kill -KILL "$(pid_of "$c")" 2>/dev/null || true; fi
  done
  if alive containerd; then
    # Every container's task (pods and sandboxes) gets SIGKILL; containerd's
    # CRI plugin then deletes the exited task itself, which ends its shim.
    local ids
    ids="$(NODE_STATE="$d" nctr tasks ls -q 2>/dev/null || true)"
    for c in $ids; do NODE_STATE="$d" nctr tasks kill -a -s SIGKILL "$c" >/dev/null 2>&1 & done
    wait
    for _ in $(seq 1 100); do
      [ -z "$(NODE_STATE="$d" nctr tasks ls -q 2>/dev/null)" ] && break
      sleep 0.1
    done
    kill -TERM "$(pid_of containerd)" 2>/dev/null || true
    node_wait_gone 5 containerd
    if alive containerd; then kill -KILL "$(pid_of containerd)" 2>/dev/null || true; fi
  fi
  # Shims (and their containers) still alive name the state folder.
  for pid in $(pgrep -f "containerd-shim.*$d/containerd" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  if [ "$owner" = 1 ]; then
    node_hosts_remove
    node_iptables_cleanup
    node_ipsets_cleanup
  fi
  # Deepest mounts first (secrets, projected tokens, rootfs, network namespaces).
  awk -v p="$d/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [ "$owner" = 1 ]; then ip link del "$NODE_BRIDGE" 2>/dev/null || true; fi
  # Pod cgroups the kubelet left behind are empty once the tasks are gone.
  find /sys/fs/cgroup/*/kubepods* -depth -type d -exec rmdir {} + 2>/dev/null || true
  [ "$(cat "$NODE_LOCK" 2>/dev/null)" = "$STATE" ] && rm -f "$NODE_LOCK"
  rm -f "$d/.real-node"
  log "real node $NODE_NAME stopped"
}

# node_wait_gone SECONDS COMPONENT...: until none of them runs, at most SECONDS.
node_wait_gone() {
  local secs="$1" c; shift
  for _ in $(seq 1 $((secs * 10))); do
    for c in "$@"; do alive "$c" && break; done
    alive "$c" || return 0
    sleep 0.1
  done
}

# node_iptables_cleanup removes every KUBE-* chain (kube-proxy's, the
# kubelet's KUBE-FIREWALL and canaries, kube-router's KUBE-ROUTER-*,
# KUBE-POD-FW-*, KUBE-NWPLCY-*) and the rules that jump to them: one
# iptables-restore per table, not one command per rule. Only one real node runs
# per machine, so they are ours.
node_iptables_cleanup() {
  local ipt t
  for ipt in iptables ip6tables; do
    command -v "$ipt-restore" >/dev/null || continue
    for t in filter nat mangle raw; do
      "$ipt-save" -t "$t" 2>/dev/null | awk -v table="$t" '
        /^:KUBE-/ { chains[++n] = substr($1, 2) }
        /^-A / && $2 !~ /^KUBE-/ && / -j KUBE-/ { sub(/^-A /, "-D "); rules[++m] = $0 }
        END {
          if (n + m == 0) exit
          print "*" table
          for (i = 1; i <= m; i++) print rules[i]
          for (i = 1; i <= n; i++) print "-F " chains[i]
          for (i = 1; i <= n; i++) print "-X " chains[i]
          print "COMMIT"
        }' | "$ipt-restore" -w --noflush 2>/dev/null || true
    done
  done
}

# node_ipsets_cleanup destroys kube-router's ipsets (once no rule uses them).
node_ipsets_cleanup() {
  command -v ipset >/dev/null || return 0
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST)-' || true); do
    ipset destroy "$set" 2>/dev/null || true
  done
}

# node_status prints the node's components (for `hack/cluster.sh status`).
node_status() {
  local c ok=0
  [ -f "$(node_dir)/.real-node" ] || return 0
  for c in "${NODE_COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"
    else printf '%-24s stopped\n' "$c"; ok=1; fi
  done
  return $ok
}
