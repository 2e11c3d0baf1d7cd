#!/usr/bin/env bash
# Builds the real node's OCI images without a Docker daemon or a registry, and
# imports them into a node's containerd.
#
#   hack/images/build.sh IMAGE...           build into $MULTIVAC_CACHE/images/<name>.tar
#                                           (MULTIVAC_IMAGE_OUT: another folder)
#   hack/images/build.sh import NODEDIR IMAGE...
#                                           build if needed, then `ctr images import`
#   hack/images/build.sh ensure IMAGE...    build only those missing or older than their inputs
#   hack/images/build.sh name IMAGE         print the image reference
#
# IMAGE is one of: pause, multivac, multivac-operator, redis, ferretdb.
#
# How: each image is one or two tar layers of files from Debian packages (the
# exact packages that own the shared libraries `ldd` lists) plus the binary,
# appended with crane onto an empty base in a throwaway in-memory registry
# (`crane registry serve` on loopback), given its config with `crane mutate`
# and written to a tarball: an OCI image layout (oci-layout, index.json naming
# the image for containerd, blobs/) that also carries a docker-archive
# manifest.json over the same blobs (the layout `docker save` writes since
# Docker 25), for OCI readers (containerd's import, skopeo's oci-archive:) and
# docker-archive readers (crane, compare.py) alike. The app and operator
# images take their user,
# entrypoint, exposed ports, labels and binary path from Dockerfile.app and
# Dockerfile.operator, so they match what those build (hack/images/test.sh
# checks it).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"

BIN="$(cluster_bin_dir)"
OUT="${MULTIVAC_IMAGE_OUT:-$MULTIVAC_CACHE/images}"
TAG="${MULTIVAC_IMAGE_TAG:-local}"
RELEASE_TARGET="${MULTIVAC_RELEASE_TARGET:-$MULTIVAC_CACHE/target-release}"
# Where the app and operator binaries come from: the release build, or (what
# hack/e2e.sh passes) the debug build `make test` made, whose debug info is
# left out of the image (debug_stripped).
BINARIES="${MULTIVAC_IMAGE_BINARIES:-$RELEASE_TARGET/release}"

image_ref() {
  case "$1" in
    pause) echo "multivac.local/pause:3.10" ;;
    multivac|multivac-operator|redis|ferretdb) echo "multivac.local/$1:$TAG" ;;
    *) die "unknown image '$1' (pause, multivac, multivac-operator, redis, ferretdb)" ;;
  esac
}

# ---- a throwaway registry ------------------------------------------------------

REG=""
REG_PID=""
registry_start() {
  [ -n "$REG" ] && return 0
  local port; port="$(free_port)"
  "$BIN/crane" registry serve --address "127.0.0.1:$port" >"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  REG="127.0.0.1:$port"
  local i
  for i in $(seq 1 50); do
    curl -sf "http://$REG/v2/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$WORK/registry.log" >&2
  die "crane registry serve did not start on $REG"
}

cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; fi
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
}

# ---- root filesystems from Debian packages ---------------------------------------

DEBS="$MULTIVAC_CACHE/images/debs"

# deb_extract ROOT PACKAGE...: unpacks the packages' files (no maintainer
# scripts run) into ROOT; the .deb files are cached.
deb_extract() {
  local root="$1"; shift
  mkdir -p "$DEBS" "$root"
  local p f
  for p in "$@"; do
    f="$(ls "$DEBS/${p}_"*.deb 2>/dev/null | head -1 || true)"
    if [ -z "$f" ]; then
      (cd "$DEBS" && apt-get download "$p" >/dev/null 2>&1) \
        || { apt-get update -qq >/dev/null && (cd "$DEBS" && apt-get download "$p" >/dev/null); } \
        || die "apt-get download $p failed"
      f="$(ls "$DEBS/${p}_"*.deb | head -1)"
    fi
    dpkg-deb -x "$f" "$root"
  done
}

# lib_packages BINARY...: the Debian packages owning the shared libraries the
# binaries load (ldd, with symlinks resolved), one per line.
lib_packages() {
  local lib real pkg
  ldd "$@" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p' | sort -u |
    while read -r lib; do
      real="$(readlink -f "$lib")"
      pkg=""
      for cand in "$lib" "$real" "${lib/#\/lib/\/usr\/lib}" "${real/#\/usr\/lib/\/lib}" "${lib/#\/lib64/\/usr\/lib64}"; do
        pkg="$(dpkg -S "$cand" 2>/dev/null | head -1 | cut -d: -f1)" && [ -n "$pkg" ] && break
      done
      [ -n "$pkg" ] || die "no Debian package owns $lib (needed by $*)"
      echo "$pkg"
    done | sort -u
}

# base_files ROOT UID NAME: /etc/passwd and /etc/group with root, nobody and
# the image's user, /tmp, and the CA bundle, as distroless' base has them.
base_files() {
  local root="$1" uid="$2" name="$3"
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/$name"
  chmod 1777 "$root/tmp"
  cat > "$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
$name:x:$uid:$uid:$name:/home/$name:/sbin/nologin
EOF
  cat > "$root/etc/group" <<EOF
root:x:0:
nobody:x:65534:
$name:x:$uid:
EOF
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  # Only what the programs need: documentation and manuals are dropped.
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/info"
}

# layer ROOT TAR [OWNER_UID]: a reproducible tarball of ROOT (sorted, fixed
# times, numeric owners: root, or OWNER_UID for its home folder).
layer() {
  local root="$1" tar="$2"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$tar" .
}

# busybox_into ROOT APPLET...: a static busybox from Debian with the applets a
# probe or start script needs (sh, grep, nc, ...), for images that must run
# shell commands the operator gives them.
busybox_into() {
  local root="$1"; shift
  local tmp="$WORK/busybox"
  rm -rf "$tmp"; deb_extract "$tmp" busybox-static
  mkdir -p "$root/bin"
  cp "$tmp/bin/busybox" "$root/bin/busybox"
  local a
  for a in "$@"; do ln -sf busybox "$root/bin/$a"; done
}

# ---- assembling ----------------------------------------------------------------

# assemble NAME MUTATE_ARGS... -- LAYER...: pushes the layers onto an empty
# base in the throwaway registry, sets the config and writes the tarball.
assemble() {
  local name="$1"; shift
  local mut=() layers=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do mut+=("$1"); shift; done
  shift
  layers=("$@")
  registry_start
  local f args=()
  for f in "${layers[@]}"; do args+=(-f "$f"); done
  "$BIN/crane" append --oci-empty-base --platform linux/amd64 "${args[@]}" -t "$REG/$name:build" >/dev/null 2>"$WORK/crane.err" \
    || { cat "$WORK/crane.err" >&2; die "crane append for $name failed"; }
  mkdir -p "$OUT"
  "$BIN/crane" mutate "$REG/$name:build" --set-platform linux/amd64 "${mut[@]}" \
    -t "$REG/$name:final" >/dev/null 2>"$WORK/crane.err" \
    || { cat "$WORK/crane.err" >&2; die "crane mutate for $name failed"; }
  local layout="$WORK/$name-oci"
  rm -rf "$layout"
  "$BIN/crane" pull --format=oci "$REG/$name:final" "$layout" 2>"$WORK/crane.err" \
    || { cat "$WORK/crane.err" >&2; die "crane pull --format=oci for $name failed"; }
  oci_names "$layout" "$(image_ref "$name")"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$OUT/$name.tar.tmp" \
    oci-layout index.json manifest.json blobs
  mv "$OUT/$name.tar.tmp" "$OUT/$name.tar"
  log "image $(image_ref "$name") -> $OUT/$name.tar ($(du -h "$OUT/$name.tar" | cut -f1))"
}

# oci_names LAYOUT REF: names the layout's one image REF for containerd
# (io.containerd.image.name, and the tag as org.opencontainers.image.ref.name)
# and adds docker-archive's manifest.json over the same blobs.
oci_names() {
  python3 - "$1" "$2" <<'PY'
import json, sys
layout, ref = sys.argv[1], sys.argv[2]
index = json.load(open(f"{layout}/index.json"))
[desc] = index["manifests"]
desc["annotations"] = {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}
json.dump(index, open(f"{layout}/index.json", "w"), separators=(",", ":"))
blob = lambda d: "blobs/" + d["digest"].replace(":", "/")
manifest = json.load(open(f"{layout}/{blob(desc)}"))
json.dump([{"Config": blob(manifest["config"]), "RepoTags": [ref], "Layers": [blob(l) for l in manifest["layers"]]}],
          open(f"{layout}/manifest.json", "w"), separators=(",", ":"))
PY
}

# dockerfile_final FILE KEY: the value of an instruction in the Dockerfile's
# last stage (the runtime image), e.g. USER or ENTRYPOINT.
dockerfile_final() {
  awk -v k="$2" '
    /^FROM /{stage++; delete seen}
    { lines[stage] = lines[stage] $0 "\n" }
    END { print lines[stage] }' "$1" |
    sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' |
    sed -n "s/^$2[[:space:]]\{1,\}//p"
}

# debug_stripped BINARY OUT: OUT is BINARY without its debug sections (a
# plain copy when it has none, as a release build with `strip = true`).
debug_stripped() {
  # grep -c reads all of readelf's output (grep -q would stop early, and
  # pipefail would see readelf's SIGPIPE).
  if [ "$(readelf -S --wide "$1" 2>/dev/null | grep -c '\.debug_')" -gt 0 ]; then
    objcopy --strip-debug "$1" "$2"
  else
    cp "$1" "$2"
  fi
}

# rust_image NAME DOCKERFILE: the app or operator image from the binary in
# $BINARIES, laid out as the Dockerfile's final stage says.
rust_image() {
  local name="$1" df="$MULTIVAC_ROOT/$2"
  local bin="$BINARIES/$name"
  [ -x "$bin" ] || die "no binary $bin: build it with \`CARGO_TARGET_DIR=$RELEASE_TARGET cargo build --release --locked -p multivac -p multivac-operator\` (or set MULTIVAC_IMAGE_BINARIES to a folder that has it)"
  debug_stripped "$bin" "$WORK/$name.bin"
  bin="$WORK/$name.bin"
  local user entry ports dest labels=() uid
  user="$(dockerfile_final "$df" USER)"
  entry="$(dockerfile_final "$df" ENTRYPOINT)"
  ports="$(dockerfile_final "$df" EXPOSE)"
  dest="$(dockerfile_final "$df" COPY | awk '{print $NF}')"
  if [ -z "$user" ] || [ -z "$entry" ] || [ -z "$dest" ]; then die "could not read USER/ENTRYPOINT/COPY from $df"; fi
  uid="${user%%:*}"
  local root="$WORK/$name-root"
  local pkgs; mapfile -t pkgs < <(lib_packages "$bin")
  deb_extract "$root" "${pkgs[@]}"
  base_files "$root" "$uid" nonroot
  install -D -m 0555 "$bin" "$root$dest"
  layer "$root" "$WORK/$name.tar"
  # The home folder belongs to the user, as in distroless' nonroot.
  mkdir -p "$WORK/$name-home/home/nonroot"
  tar --mtime=@0 --owner="$uid" --group="$uid" --numeric-owner -C "$WORK/$name-home" -cf "$WORK/$name-home.tar" ./home/nonroot
  # LABEL key="value" pairs (ARG defaults substituted).
  local version; version="$(awk -F= '/^ARG VERSION=/{print $2}' "$df")"
  while read -r kv; do
    kv="${kv//\$\{VERSION\}/$version}"
    kv="${kv//\$\{REVISION\}/$(git -C "$MULTIVAC_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    kv="${kv//\$\{CREATED\}/1970-01-01T00:00:00Z}"
    labels+=(-l "$kv")
  done < <(dockerfile_final "$df" LABEL | grep -o '[a-z.]*="[^"]*"' | sed 's/="\(.*\)"$/=\1/')
  local pargs=() p
  # As docker build records them: a port without a protocol is TCP.
  for p in $ports; do [[ "$p" == */* ]] || p="$p/tcp"; pargs+=(--exposed-ports "$p"); done
  local eargs=() e
  while read -r e; do eargs+=(--entrypoint "$e"); done < <(python3 -c 'import json,sys; [print(x) for x in json.loads(sys.argv[1])]' "$entry")
  assemble "$name" --user "$user" "${eargs[@]}" "${pargs[@]}" "${labels[@]}" --workdir / \
    -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -- "$WORK/$name.tar" "$WORK/$name-home.tar"
}

build_pause() {
  local root="$WORK/pause-root" src
  src="$(cd "$MULTIVAC_ROOT/hack/node" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  [ -f "$src" ] || die "pause.c not found in the k8s.io/kubernetes module ($src)"
  mkdir -p "$root"
  gcc -Os -static -DVERSION="$K8S_VERSION" -o "$root/pause" "$src" || die "gcc could not build the pause binary (apt-get install gcc libc6-dev)"
  strip "$root/pause"
  layer "$root" "$WORK/pause.tar"
  assemble pause --user 65535:65535 --entrypoint /pause -- "$WORK/pause.tar"
}

# Redis: Debian's redis-server and redis-cli, with busybox for the `sh -c`
# start command and the readiness probe the operator gives the container.
build_redis() {
  apt_install redis-server redis-tools
  local root="$WORK/redis-root"
  local pkgs; mapfile -t pkgs < <(lib_packages /usr/bin/redis-check-rdb /usr/bin/redis-cli)
  deb_extract "$root" redis-tools "${pkgs[@]}"
  ln -sf redis-check-rdb "$root/usr/bin/redis-server"
  busybox_into "$root" sh grep cat ls
  base_files "$root" 999 redis
  mkdir -p "$root/data"; chmod 0777 "$root/data"
  layer "$root" "$WORK/redis.tar"
  assemble redis --user 999:999 --cmd redis-server --workdir /data --exposed-ports 6379/tcp \
    -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -- "$WORK/redis.tar"
}

# FerretDB behind the official mongo image's contract: root user from
# MONGO_INITDB_ROOT_USERNAME/PASSWORD, data in /data/db, port 27017, and a
# `mongosh` that answers the operator's readiness probe.
build_ferretdb() {
  local fdb; fdb="$(bash "$MULTIVAC_ROOT/hack/deps/ferretdb.sh")"
  local root="$WORK/ferretdb-root"
  local pkgs; mapfile -t pkgs < <(lib_packages "$fdb")
  deb_extract "$root" "${pkgs[@]}"
  install -D -m 0555 "$fdb" "$root/usr/local/bin/ferretdb"
  install -D -m 0555 "$MULTIVAC_ROOT/hack/images/ferretdb/docker-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  install -D -m 0555 "$MULTIVAC_ROOT/hack/images/ferretdb/mongosh" "$root/usr/local/bin/mongosh"
  busybox_into "$root" sh nc od tr sleep cat
  base_files "$root" 999 mongodb
  mkdir -p "$root/data/db" "$root/data/configdb"; chmod 0777 "$root/data/db" "$root/data/configdb"
  layer "$root" "$WORK/ferretdb.tar"
  assemble ferretdb --user 999:999 --entrypoint /usr/local/bin/docker-entrypoint.sh --workdir /data/db \
    --exposed-ports 27017/tcp -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -- "$WORK/ferretdb.tar"
}

build() {
  case "$1" in
    pause) build_pause ;;
    multivac) rust_image multivac Dockerfile.app ;;
    multivac-operator) rust_image multivac-operator Dockerfile.operator ;;
    redis) build_redis ;;
    ferretdb) build_ferretdb ;;
    *) die "unknown image '$1' (pause, multivac, multivac-operator, redis, ferretdb)" ;;
  esac
}

# fresh NAME: the tarball exists and is newer than everything it is made of.
fresh() {
  local tar="$OUT/$1.tar" inputs=("$MULTIVAC_ROOT/hack/images/build.sh")
  [ -s "$tar" ] || return 1
  case "$1" in
    multivac) inputs+=("$BINARIES/multivac" "$MULTIVAC_ROOT/Dockerfile.app") ;;
    multivac-operator) inputs+=("$BINARIES/multivac-operator" "$MULTIVAC_ROOT/Dockerfile.operator") ;;
    ferretdb) inputs+=("$MULTIVAC_ROOT"/hack/images/ferretdb/*) ;;
  esac
  local f
  for f in "${inputs[@]}"; do [ "$f" -ot "$tar" ] || return 1; done
}

[ -x "$BIN/crane" ] || bash "$MULTIVAC_ROOT/hack/node/build.sh" >/dev/null
WORK="$(mktemp -d)"
trap cleanup EXIT

case "${1:-}" in
  name) image_ref "${2:?image}" ;;
  import)
    shift; node="${1:?node state folder}"; shift
    # shellcheck source=hack/node/containerd.sh
    source "$MULTIVAC_ROOT/hack/node/containerd.sh"
    for i in "$@"; do
      fresh "$i" || build "$i"
      NODE_STATE="$node" nctr images import "$OUT/$i.tar" >/dev/null \
        || die "ctr images import $OUT/$i.tar failed"
      image_ref "$i"
    done ;;
  ensure) shift; for i in "$@"; do fresh "$i" || build "$i"; image_ref "$i"; done ;;
  ""|-h|--help) sed -n '2,20p' "$0"; exit 2 ;;
  *) for i in "$@"; do build "$i"; image_ref "$i"; done ;;
esac
