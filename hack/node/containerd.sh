# shellcheck shell=bash
# containerd for the real node: its own config, socket, root and state under
# the node's state folder, so it never touches a system containerd. Sourced by
# hack/node/node.sh.

# node_containerd_config STATE prints a containerd 1.6 (config version 2) file.
# SystemdCgroup=false: no systemd here, so runc and the kubelet both use the
# cgroupfs driver. The CNI plugins are Debian's containernetworking-plugins.
node_containerd_config() {
  local s="$1"
  cat <<TOML
version = 2
root = "$s/containerd/root"
state = "$s/containerd/state"
oom_score = 0

[grpc]
  address = "$s/containerd/containerd.sock"

[ttrpc]
  address = "$s/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$s/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # Network namespaces under the state folder, removed with it.
  netns_mounts_under_state_dir = true
  sandbox_image = "$NODE_PAUSE_IMAGE"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$s/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
TOML
}

# nctr runs ctr against the node's containerd in the CRI namespace.
nctr() { ctr --address "$NODE_STATE/containerd/containerd.sock" -n k8s.io "$@"; }
