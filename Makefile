# make test: Chromium when missing (scripts/test-deps.sh), then vet, staticcheck
# and the race-enabled tests.
# make bench: the load benchmark and Go benchmarks (bench/run.sh), then
# replicas sharing a grant (bench/replicas.sh; make bench-replicas alone).

.PHONY: test test-deps bench bench-replicas

test: test-deps
	go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./... && go test -race ./...

test-deps:
	bash scripts/test-deps.sh

bench:
	bash bench/run.sh
	bash bench/replicas.sh

bench-replicas:
	bash bench/replicas.sh
