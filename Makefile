# The two commands the README promises, plus the benchmarks.
.PHONY: demo test bench fmt e2e images

# `make demo CLUSTER=1` runs the same MultiVAC as the operator provisions it on a
# real local Kubernetes node (root; it stays up and prints how to curl it).
demo: ## Run MultiVAC locally: Redis, the MongoDB-compatible server, one server and two workers
	@if [ -n "$(CLUSTER)" ]; then MULTIVAC_E2E_KEEP=1 bash hack/e2e.sh; else bash hack/demo.sh; fi

test: ## Run every test, installing what is missing (what CI runs)
	bash hack/test.sh

bench: ## Print the benchmark figures
	bash hack/bench.sh

fmt:
	cargo fmt --all

e2e: ## End-to-end on a real node (root): operator from its chart, a MultiVac on local images, HTTP through its Service
	bash hack/e2e.sh

images: ## The app and operator images as OCI archives in dist/images (for kind/k3d: docs/install.md)
	bash hack/images/archives.sh
