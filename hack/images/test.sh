#!/usr/bin/env bash
# Builds the app and operator images the daemonless way (hack/images/build.sh)
# and checks each against its Dockerfile (compare.py): user, entrypoint,
# exposed ports, labels, the binary's path, mode and bytes, its libraries.
# The binaries come from MULTIVAC_IMAGE_BINARIES (default: the release build);
# a debug build's image holds the binary without its debug sections, which is
# what its bytes are compared with.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
target="${MULTIVAC_RELEASE_TARGET:-$MULTIVAC_CACHE/target-release}"
binaries="${MULTIVAC_IMAGE_BINARIES:-$target/release}"
for b in multivac multivac-operator; do
  [ -x "$binaries/$b" ] || die "no binary $binaries/$b: run \`CARGO_TARGET_DIR=$target cargo build --release --locked -p multivac -p multivac-operator\` (or \`make e2e\`, which uses the debug build of \`make test\`)"
done
bash "$MULTIVAC_ROOT/hack/images/build.sh" multivac multivac-operator >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rc=0
for pair in multivac:Dockerfile.app multivac-operator:Dockerfile.operator; do
  b="${pair%%:*}"
  if [ "$(readelf -S --wide "$binaries/$b" | grep -c '\.debug_')" -gt 0 ]; then
    objcopy --strip-debug "$binaries/$b" "$work/$b"
  else
    cp "$binaries/$b" "$work/$b"
  fi
  python3 "$MULTIVAC_ROOT/hack/images/compare.py" "$MULTIVAC_ROOT/${pair#*:}" "$MULTIVAC_CACHE/images/$b.tar" "$work/$b" || rc=1
done
exit $rc
