#!/usr/bin/env bash
# bench/replicas.sh (`make bench-replicas`, and the end of `make bench`):
# issue 9 §6's benchmark, BenchmarkReplicas in bench/replicas: 3 `coop-proxy
# serve` processes × 64 callers across 10 token expiries (the COOP emulator
# expires every access token every 11 s), for the token file shared by the
# three on one host and for Redis (a real redis-server, each replica in a
# directory of its own), with client credentials and with the farmer's grant
# (a rotating refresh token). It reports the token requests the emulator
# received per expiry and the p99 latency of the callers' requests in the
# second after an expiry (the refresh) against the rest, and appends them to
# bench/results/YYYY-MM-DD.md. It takes about 8 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
bash scripts/test-deps.sh # redis-server

# No setting of the caller's may change how coop-proxy runs here.
for var in $(compgen -v COOP_PROXY_ || true); do
	unset "$var"
done

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
out=$(mktemp -t coop-proxy-replicas.XXXXXX)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench BenchmarkReplicas -benchtime 1x -timeout 30m ./bench/replicas/ | tee "$out" >&2

section=$(mktemp -t coop-proxy-replicas-md.XXXXXX)
trap 'rm -f "$out" "$section"' EXIT
{
	echo "## Replicas sharing a grant, run at $(date +%H:%M:%S%z)"
	echo
	echo "- machine: $(nproc) cores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r);"
	echo "  load average before the run: $loadavg; $(go version), $(redis-server --version | cut -d' ' -f1-3)"
	echo "- \`go test -run '^\$' -bench BenchmarkReplicas -benchtime 1x ./bench/replicas/\` (bench/replicas.sh):"
	echo "  3 \`coop-proxy serve\` processes, 64 callers (closed loop, POST /api/1/eggs-count, spread"
	echo "  evenly), the COOP emulator in the benchmark's process expiring every access token every 11 s,"
	echo "  10 times; everything on this machine's cores"
	echo "- token requests: those of the grant (client_credentials, or refresh_token for the farmer's"
	echo "  grant) that the emulator received during the load; 1 per expiry is the least possible"
	echo "- p99 during a refresh: requests started within 1 s after an expiry (their token is rejected,"
	echo "  refreshed once between the replicas, the request retried); other: the rest"
	echo
	echo "| store | grant | token requests | per expiry | requests | failed | p99 during a refresh (ms) | max then | requests then | p99 other (ms) | max other |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	awk '/^BenchmarkReplicas\// {
		split($1, name, "/"); sub(/-[0-9]+$/, "", name[3])
		delete m
		for (i = 3; i < NF; i += 2) m[$(i + 1)] = $i
		store = (name[2] == "file") ? "file, one host" : "Redis"
		printf "| %s | %s | %d | %.2f | %d | %d | %.1f | %.1f | %d | %.1f | %.1f |\n", store, name[3],
			m["token-requests"], m["token-requests/expiry"], m["requests"], m["failed"],
			m["p99-refresh-ms"], m["max-refresh-ms"], m["refresh-requests"], m["p99-other-ms"], m["max-other-ms"]
	}' "$out"
	echo
} >"$section"

bash bench/append-results.sh "$section"
if awk '/^BenchmarkReplicas\// { for (i = 3; i < NF; i += 2) if ($(i + 1) == "failed" && $i > 0) bad = 1 } END { exit !bad }' "$out"; then
	echo "some requests failed: see the table" >&2
	exit 1
fi
