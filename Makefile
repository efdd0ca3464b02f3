# make test: Chromium, redis-server, zsh and fish when missing (scripts/test-deps.sh), then
# vet, staticcheck and the race-enabled tests.
# make bench: the load benchmark and Go benchmarks (bench/run.sh), then
# replicas sharing a grant (bench/replicas.sh; make bench-replicas alone).
# make cross: vet and test builds for the six release targets (.ci/cross).

.PHONY: test test-deps bench bench-replicas release cross

test: test-deps
	go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./... && go test -race ./...

test-deps:
	bash scripts/test-deps.sh

bench:
	bash bench/run.sh
	bash bench/replicas.sh

bench-replicas:
	bash bench/replicas.sh

# make release: archives for the six targets, the SBOM and SHA256SUMS in
# dist/ (scripts/release). VERSION=v1.2.3 to name it; else git describe.
release:
	go run ./scripts/release -out $(or $(DIST),dist) $(if $(VERSION),-version $(VERSION))

cross:
	bash .ci/cross
