# The two commands the README promises, plus the benchmarks.
.PHONY: demo test bench fmt e2e

demo: ## Run MultiVAC locally: Redis, the MongoDB-compatible server, one server and two workers
	bash hack/demo.sh

test: ## Run every test, installing what is missing (what CI runs)
	bash hack/test.sh

bench: ## Print the benchmark figures
	bash hack/bench.sh

fmt:
	cargo fmt --all

e2e: ## End-to-end on a real node (root): operator from its chart, a MultiVac on local images, HTTP through its Service
	bash hack/e2e.sh
