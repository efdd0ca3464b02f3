# make test: vet, staticcheck and the race-enabled tests.
# make bench: the load benchmark and Go benchmarks (bench/run.sh).

.PHONY: test bench

test:
	go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./... && go test -race ./...

bench:
	bash bench/run.sh
