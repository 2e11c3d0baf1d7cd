# Entry points; `make` alone lists them. The scripts they call live in hack/.
.DEFAULT_GOAL := help
.PHONY: help demo unit lint generate test test-only faults e2e bench fmt images

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z0-9-]+:.*## / { printf "  make %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# `make demo CLUSTER=1` runs the same MultiVAC as the operator provisions it on a
# real local Kubernetes node (root; it stays up and prints how to curl it).
demo: ## Run MultiVAC locally: Redis, the MongoDB-compatible server, one server and two workers (CLUSTER=1: on a real local node)
	@if [ -n "$(CLUSTER)" ]; then MULTIVAC_E2E_KEEP=1 bash hack/e2e.sh; else bash hack/demo.sh; fi

unit: ## The fast tests: no server needed
	cargo test --workspace --locked

lint: ## Every lint: fmt, clippy, shellcheck, generated files current, Dockerfiles, chart, RBAC, pipeline
	bash hack/lint.sh

generate: ## Write every generated file (the CRD copies, the reference tables in docs/)
	cargo xtask generate

test: ## Run every test, installing what is missing (what CI runs): lints, then test-only
	bash hack/test.sh

test-only: ## Every test without the lints (the pipeline's test job; its lint jobs run those)
	bash hack/test.sh --no-lint

faults: ## The fault suite: Redis, MongoDB, workers and a server killed, filled or stopped under load; a table of what was lost
	bash hack/faults.sh

e2e: ## End-to-end on a real node (root): operator from its chart, a MultiVac on local images, HTTP through its Service
	bash hack/e2e.sh

bench: ## Print the benchmark figures
	bash hack/bench.sh

fmt: ## Format the Rust code
	cargo fmt --all

images: ## The app and operator images as OCI archives in dist/images (for kind/k3d: docs/install.md)
	bash hack/images/archives.sh
