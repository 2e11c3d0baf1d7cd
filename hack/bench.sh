#!/usr/bin/env bash
# `make bench`: the app's benchmark, then the operator's and the scaler's when they
# exist, then the local cluster's volume binding.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/bench/app.sh
if [ -f hack/bench/operator.sh ]; then
  bash hack/bench/operator.sh
fi
if [ -f hack/bench/scaling.sh ]; then
  bash hack/bench/scaling.sh
fi
bash hack/bench/volumes.sh
