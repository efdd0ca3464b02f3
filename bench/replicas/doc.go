// Package replicas holds BenchmarkReplicas (bench/replicas.sh, `make
// bench`): three `coop-proxy serve` processes sharing one grant, on the
// token file of one host or on a real redis-server, 64 callers spread over
// them, the COOP emulator expiring every access token ten times within
// the run. It reports the token requests the emulator received per
// expiry, and the p99 latency of the callers' requests in the second
// after an expiry (the refresh it causes) against the rest.
package replicas
