#!/usr/bin/env bash
# bench/callgrind.sh: the instructions per request of (b) bench/bareproxy and
# (d) `coop-proxy serve` (JSON request log at info level), each counted by
# valgrind's callgrind while wrk loads it, in front of the COOP emulator (not
# counted). Unlike CPU time, an instruction count does not depend on what
# else the machine runs, so a change of a percent shows; it misses the
# kernel's time and the processor's caches, which bench/run.sh's CPU time
# per request has.
#
#   bash bench/callgrind.sh [SECONDS]     # 15 s of load each (after 3 s unmeasured)
#
# CALLGRIND_GOGC=off counts the request path without the garbage collector,
# whose share otherwise varies with the few collections a run holds. The
# callgrind files are kept and named at the end, for callgrind_annotate.
# Ports: BENCH_PORT_BASE (default 18180) and the four after it, on 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-15}

port_base=${BENCH_PORT_BASE:-18180}
upstream_addr=127.0.0.1:$port_base
bare_addr=127.0.0.1:$((port_base + 1))
proxy_addr=127.0.0.1:$((port_base + 3))
admin_addr=127.0.0.1:$((port_base + 4))
api_path=/api/1/eggs-count

for cmd in valgrind callgrind_control wrk curl jq; do
	command -v "$cmd" >/dev/null || {
		echo "$cmd is missing (apt-get install valgrind wrk curl jq)" >&2
		exit 1
	}
done

# The temp dir (mode 0700) holds the client secret and an access token; the
# callgrind files go to their own directory, which is kept.
tmp=$(mktemp -d -t coop-proxy-callgrind.XXXXXX)
out=$(mktemp -d -t coop-proxy-callgrind-out.XXXXXX)
declare -A pids=()
cleanup() {
	for name in "${!pids[@]}"; do
		kill -TERM "${pids[$name]}" 2>/dev/null || true
		wait "${pids[$name]}" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for var in $(compgen -v COOP_PROXY_ || true); do
	unset "$var"
done

echo "building" >&2
go build -o "$tmp/coop-proxy" ./cmd/coop-proxy
go build -o "$tmp/upstream" ./bench/upstream
go build -o "$tmp/bareproxy" ./bench/bareproxy

"$tmp/upstream" -listen "$upstream_addr" -credentials "$tmp/credentials.json" >"$tmp/upstream.log" 2>&1 &
pids[upstream]=$!
for _ in $(seq 100); do
	[[ -s $tmp/credentials.json ]] && break
	sleep 0.1
done
[[ -s $tmp/credentials.json ]] || { echo "the emulator wrote no credentials" >&2; exit 1; }
jq -r .client_secret "$tmp/credentials.json" >"$tmp/client_secret"
jq -r .access_token "$tmp/credentials.json" >"$tmp/access_token"

declare -A per_request=()

# measure NAME ADDR CMD...: run CMD under callgrind with its instrumentation
# off, wait for ADDR to answer, load it 3 s, then count the instructions of
# SECONDS of load and divide them by the requests wrk saw answered.
# asyncpreemptoff: callgrind fails an assertion on Go's preemption signal;
# GOMAXPROCS=1: as bench/run.sh's one core gives it.
measure() {
	local name=$1 addr=$2 url=http://$2$api_path
	shift 2
	env GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 ${CALLGRIND_GOGC:+GOGC=$CALLGRIND_GOGC} \
		valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/$name.callgrind" \
		"$@" >"$tmp/$name.log" 2>&1 &
	pids[$name]=$!
	for _ in $(seq 300); do
		curl -fsS -o /dev/null --max-time 2 -X POST "$url" 2>/dev/null && break
		kill -0 "${pids[$name]}" 2>/dev/null || { tail -n 20 "$tmp/$name.log" >&2; exit 1; }
		sleep 0.2
	done
	echo "load $name: $url" >&2
	wrk -t1 -c8 -d3s -s "$root/bench/post.lua" "$url" >/dev/null
	callgrind_control -i on "${pids[$name]}" >/dev/null 2>&1
	wrk -t1 -c8 -d"$secs"s -s "$root/bench/post.lua" "$url" >"$tmp/wrk-$name.txt"
	callgrind_control -d "${pids[$name]}" >/dev/null 2>&1
	kill -TERM "${pids[$name]}"
	wait "${pids[$name]}" 2>/dev/null || true
	unset "pids[$name]"
	local requests instructions
	requests=$(awk '/requests in/ { print $1 }' "$tmp/wrk-$name.txt")
	instructions=$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$name.callgrind.1")
	per_request[$name]=$((instructions / requests))
	echo "$name: $requests requests, $instructions instructions, ${per_request[$name]} a request"
}

measure bare "$bare_addr" "$tmp/bareproxy" -listen "$bare_addr" -upstream "http://$upstream_addr" -token-file "$tmp/access_token"
# Exported rather than given through env(1), which callgrind would count instead.
export COOP_PROXY_UPSTREAM="http://$upstream_addr" \
	COOP_PROXY_CLIENT_ID="$(jq -r .client_id "$tmp/credentials.json")" \
	COOP_PROXY_CLIENT_SECRET_FILE="$tmp/client_secret" \
	COOP_PROXY_STORE="$tmp/tokens.json" \
	COOP_PROXY_LISTEN="$proxy_addr" \
	COOP_PROXY_ADMIN_LISTEN="$admin_addr" \
	COOP_PROXY_LOG_FORMAT=json
measure coop-proxy "$proxy_addr" "$tmp/coop-proxy" serve

awk -v d="${per_request[coop-proxy]}" -v b="${per_request[bare]}" 'BEGIN { printf "coop-proxy / bare: %.3f instructions a request\n", d / b }'
echo "callgrind files: $out/bare.callgrind.1 and $out/coop-proxy.callgrind.1 (callgrind_annotate FILE)"
