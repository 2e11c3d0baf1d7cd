#!/usr/bin/env bash
# Builds the app and operator images the daemonless way (hack/images/build.sh)
# and checks each against its Dockerfile (compare.py): user, entrypoint,
# exposed ports, labels, the binary's path, mode and bytes, its libraries.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
target="${MULTIVAC_RELEASE_TARGET:-$MULTIVAC_CACHE/target-release}"
for b in multivac multivac-operator; do
  [ -x "$target/release/$b" ] || die "no release binary $target/release/$b: run \`CARGO_TARGET_DIR=$target cargo build --release --locked -p multivac -p multivac-operator\` (or \`make e2e\`)"
done
bash "$MULTIVAC_ROOT/hack/images/build.sh" multivac multivac-operator >/dev/null
rc=0
python3 "$MULTIVAC_ROOT/hack/images/compare.py" "$MULTIVAC_ROOT/Dockerfile.app" "$MULTIVAC_CACHE/images/multivac.tar" "$target/release/multivac" || rc=1
python3 "$MULTIVAC_ROOT/hack/images/compare.py" "$MULTIVAC_ROOT/Dockerfile.operator" "$MULTIVAC_CACHE/images/multivac-operator.tar" "$target/release/multivac-operator" || rc=1
exit $rc
