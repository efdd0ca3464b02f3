#!/usr/bin/env bash
# bench/run.sh (`make bench`): the throughput and latency of coop-proxy
# against a bare Go reverse proxy and nginx, in front of the COOP emulator.
#
# Targets, each loaded in turn by wrk from core 1 while the COOP emulator and
# the proxy under test share core 0:
#   (a) the COOP emulator directly (wrk sends the bearer token itself)
#   (b) bench/bareproxy: a bare httputil.ReverseProxy adding a fixed token,
#       with the same transport as coop-proxy and a pool of copy buffers
#   (c) nginx, 1 worker, adding the same fixed token
#   (d) `coop-proxy serve`, client credentials grant, JSON log at info level
#   (e) (d) with COOP_PROXY_DPOP=true (an ES256 proof signed per request),
#       in front of bench/dpopupstream, a DPoP token endpoint and API that
#       checks every proof with go-jose (the emulator takes only Bearer)
# Each gets a 2 s warm-up, then `wrk -t1 -c32 --latency`, POST
# /api/1/eggs-count: (a), (c) and (e) for 10 s; (b) and (d), the pair the target
# compares, in BENCH_ROUNDS (6) alternating rounds of 5 s each, medians
# reported. The CPU time the process under test spends per request is read
# from /proc/PID/stat around each run. The results, and the Go benchmarks of
# the proxy package, go to bench/results/YYYY-MM-DD.md (a new section per
# run) and to stdout.
#
# Ports: BENCH_PORT_BASE (default 18080) and the seven after it, on 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

port_base=${BENCH_PORT_BASE:-18080}
upstream_addr=127.0.0.1:$port_base
bare_addr=127.0.0.1:$((port_base + 1))
nginx_addr=127.0.0.1:$((port_base + 2))
proxy_addr=127.0.0.1:$((port_base + 3))
admin_addr=127.0.0.1:$((port_base + 4))
dpop_upstream_addr=127.0.0.1:$((port_base + 5))
dpop_proxy_addr=127.0.0.1:$((port_base + 6))
dpop_admin_addr=127.0.0.1:$((port_base + 7))
api_path=/api/1/eggs-count
wrk_args=(-t1 -c32 --latency -s "$root/bench/post.lua")
bd_rounds=${BENCH_ROUNDS:-6}

# --- tools -------------------------------------------------------------------
missing=()
for cmd in wrk nginx curl jq; do
	command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if ((${#missing[@]})); then
	echo "installing ${missing[*]}" >&2
	apt-get update
	apt-get install -y "${missing[@]}"
fi

# --- temp dir, processes, cleanup ---------------------------------------------
# The temp dir (mode 0700) holds the client secret and an access token.
tmp=$(mktemp -d -t coop-proxy-bench.XXXXXX)
declare -A pids=() # name → pid of each server started

# stop NAME: SIGTERM the server NAME and wait for it to exit.
stop() {
	local pid=${pids[$1]:-}
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "pids[$1]"
}

cleanup() {
	local status=$?
	for name in "${!pids[@]}"; do
		stop "$name"
	done
	if ((status == 0)); then
		rm -rf "$tmp"
	else
		echo "bench failed; logs kept in $tmp" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: run CMD in the background, output to $tmp/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids[$name]=$!
}

# fail NAME MESSAGE: show the end of NAME's log and stop the run.
fail() {
	echo "$1: $2" >&2
	tail -n 20 "$tmp/$1.log" >&2 || true
	exit 1
}

# await_ok NAME URL [CURL ARGS...]: wait up to 10 s for URL to answer 2xx.
await_ok() {
	local name=$1 url=$2
	shift 2
	for _ in $(seq 100); do
		if curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null; then
			return 0
		fi
		kill -0 "${pids[$name]}" 2>/dev/null || fail "$name" "exited"
		sleep 0.1
	done
	fail "$name" "no 2xx from $url within 10 s"
}

# No setting of the caller's may change how coop-proxy runs here.
for var in $(compgen -v COOP_PROXY_ || true); do
	unset "$var"
done

for addr in "$upstream_addr" "$bare_addr" "$nginx_addr" "$proxy_addr" "$admin_addr" "$dpop_upstream_addr" "$dpop_proxy_addr" "$dpop_admin_addr"; do
	if (: <"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then
		echo "$addr is in use: set BENCH_PORT_BASE to a free range" >&2
		exit 1
	fi
done

# --- build and start COOP ----------------------------------------------------
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
echo "building" >&2
mkdir "$tmp/bin"
go build -o "$tmp/bin/coop-proxy" ./cmd/coop-proxy
go build -o "$tmp/bin/upstream" ./bench/upstream
go build -o "$tmp/bin/bareproxy" ./bench/bareproxy
go build -o "$tmp/bin/dpopupstream" ./bench/dpopupstream

start upstream taskset -c 0 "$tmp/bin/upstream" -listen "$upstream_addr" -credentials "$tmp/credentials.json"
for _ in $(seq 100); do
	[[ -s $tmp/credentials.json ]] && break
	sleep 0.1
done
[[ -s $tmp/credentials.json ]] || fail upstream "wrote no credentials"
client_id=$(jq -r .client_id "$tmp/credentials.json")
jq -r .client_secret "$tmp/credentials.json" >"$tmp/client_secret"
token=$(jq -r .access_token "$tmp/credentials.json")
printf '%s\n' "$token" >"$tmp/access_token"
printf 'Authorization: Bearer %s\n' "$token" >"$tmp/auth-header"
await_ok upstream "http://$upstream_addr$api_path" -X POST -H "@$tmp/auth-header"

# --- load --------------------------------------------------------------------
# to_ms VALUE: wrk's "290.00us", "1.03ms", "1.20s" in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
		if (f < 0) { print "cannot read wrk latency " v > "/dev/stderr"; exit 1 }
		printf "%.3f", n * f
	}'
}

declare -A rps=() p50=() p99=() errors=() cpu=() rounds=()

# cpu_ticks PID: the user and system CPU time PID has used, in clock ticks
# (/proc/PID/stat fields 14 and 15, counted after the command name).
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
clk_tck=$(getconf CLK_TCK)

# load LABEL ADDR PIDNAME SECONDS [ENV...]: measure ADDR with wrk on core 1
# for SECONDS (after a 2 s warm-up the first time), and the CPU time the
# process PIDNAME (a name given to start; "-" for none) spends per request
# meanwhile; ENV (NAME=VALUE) is passed to wrk (post.lua reads
# BENCH_TOKEN). Each call adds a round to LABEL's lists.
load() {
	local label=$1 url=http://$2$api_path pid=${pids[$3]:-} secs=$4
	shift 4
	echo "load $label: $url" >&2
	if [[ -z ${rounds[$label]:-} ]]; then
		env "$@" taskset -c 1 wrk "${wrk_args[@]}" -d2s "$url" >/dev/null
	fi
	local before=0 after=0
	[[ -n $pid ]] && before=$(cpu_ticks "$pid")
	env "$@" taskset -c 1 wrk "${wrk_args[@]}" -d"$secs"s "$url" >"$tmp/wrk-$label.txt"
	[[ -n $pid ]] && after=$(cpu_ticks "$pid")
	record "$label" $((after - before))
}

# load_together SECONDS LABEL ADDR PIDNAME...: as load, for several targets
# loaded at the same time, each by its own wrk on core 1. CPU time per
# request on a shared machine drifts from one second to the next by more
# than the difference measured; loaded together, the targets see the same
# drift, the same neighbours and the same share of core 0.
load_together() {
	local secs=$1
	shift
	local -a labels=() urls=() pidv=() before=()
	while (($#)); do
		labels+=("$1") urls+=("http://$2$api_path") pidv+=("${pids[$3]}")
		shift 3
	done
	echo "load ${labels[*]} together" >&2
	local i
	local -a wrks=() # the servers are this shell's children too: wait for these only
	if [[ -z ${rounds[${labels[0]}]:-} ]]; then
		for i in "${!labels[@]}"; do
			taskset -c 1 wrk "${wrk_args[@]}" -d2s "${urls[$i]}" >/dev/null &
			wrks+=($!)
		done
		wait "${wrks[@]}"
		wrks=()
	fi
	for i in "${!labels[@]}"; do
		before+=("$(cpu_ticks "${pidv[$i]}")")
	done
	for i in "${!labels[@]}"; do
		taskset -c 1 wrk "${wrk_args[@]}" -d"$secs"s "${urls[$i]}" >"$tmp/wrk-${labels[$i]}.txt" &
		wrks+=($!)
	done
	wait "${wrks[@]}"
	for i in "${!labels[@]}"; do
		record "${labels[$i]}" $(($(cpu_ticks "${pidv[$i]}") - before[i]))
	done
}

# record LABEL TICKS: add the round in $tmp/wrk-LABEL.txt, in which the
# process under test used TICKS of CPU time, to LABEL's lists.
record() {
	local label=$1 ticks=$2 out=$tmp/wrk-$1.txt
	rounds[$label]=$((${rounds[$label]:-0} + 1))
	local requests
	requests=$(awk '/requests in/ { print $1 }' "$out")
	cpu[$label]+=" $(awk -v t="$ticks" -v hz="$clk_tck" -v n="$requests" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')"
	rps[$label]+=" $(awk '/^Requests\/sec:/ { print $2 }' "$out")"
	p50[$label]+=" $(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
	p99[$label]+=" $(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
	# "Non-2xx or 3xx responses: N" and "Socket errors: connect N, read N,
	# write N, timeout N" appear only when there are any.
	errors[$label]=$((${errors[$label]:-0} + $(awk -F'[:,]' '
		/^ *Non-2xx or 3xx responses:/ { n += $2 }
		/^ *Socket errors:/ { for (i = 2; i <= NF; i++) { split($i, w, " "); n += w[2] } }
		END { print n + 0 }' "$out")))
}

# median VALUES...: the median of the numbers given.
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

load a "$upstream_addr" upstream 10 BENCH_TOKEN="$token"

sed -e "s|@TMP@|$tmp|g" -e "s|@LISTEN@|$nginx_addr|g" -e "s|@UPSTREAM@|$upstream_addr|g" \
	-e "s|@TOKEN@|$token|g" bench/nginx.conf.tmpl >"$tmp/nginx.conf"
start nginx taskset -c 0 nginx -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/nginx-error.log"
await_ok nginx "http://$nginx_addr$api_path" -X POST
load c "$nginx_addr" - 10
stop nginx

# (b) and (d) run side by side and are loaded together (load_together), in
# rounds; the medians of the rounds are reported.
start bareproxy taskset -c 0 "$tmp/bin/bareproxy" -listen "$bare_addr" \
	-upstream "http://$upstream_addr" -token-file "$tmp/access_token"
await_ok bareproxy "http://$bare_addr$api_path" -X POST

start coop-proxy env \
	COOP_PROXY_UPSTREAM="http://$upstream_addr" \
	COOP_PROXY_CLIENT_ID="$client_id" \
	COOP_PROXY_CLIENT_SECRET_FILE="$tmp/client_secret" \
	COOP_PROXY_STORE="$tmp/tokens.json" \
	COOP_PROXY_LISTEN="$proxy_addr" \
	COOP_PROXY_ADMIN_LISTEN="$admin_addr" \
	COOP_PROXY_LOG_FORMAT=json \
	taskset -c 0 "$tmp/bin/coop-proxy" serve
await_ok coop-proxy "http://$admin_addr/readyz"
await_ok coop-proxy "http://$proxy_addr$api_path" -X POST
for _ in $(seq "$bd_rounds"); do
	load_together 5 b "$bare_addr" bareproxy d "$proxy_addr" coop-proxy
done
stop bareproxy
stop coop-proxy # flushes its log
log_lines=$(grep -c '"msg":"request"' "$tmp/coop-proxy.log" || true)

stop upstream

# (e): (d) with DPoP, before its own DPoP upstream (which takes any client
# secret, and verifies every proof: its CPU is not counted).
start dpopupstream taskset -c 0 "$tmp/bin/dpopupstream" -listen "$dpop_upstream_addr"
start coop-proxy-dpop env \
	COOP_PROXY_UPSTREAM="http://$dpop_upstream_addr" \
	COOP_PROXY_CLIENT_ID="$client_id" \
	COOP_PROXY_CLIENT_SECRET_FILE="$tmp/client_secret" \
	COOP_PROXY_DPOP=true \
	COOP_PROXY_STORE="$tmp/tokens-dpop.json" \
	COOP_PROXY_LISTEN="$dpop_proxy_addr" \
	COOP_PROXY_ADMIN_LISTEN="$dpop_admin_addr" \
	COOP_PROXY_LOG_FORMAT=json \
	taskset -c 0 "$tmp/bin/coop-proxy" serve
await_ok coop-proxy-dpop "http://$dpop_admin_addr/readyz"
await_ok coop-proxy-dpop "http://$dpop_proxy_addr$api_path" -X POST
load e "$dpop_proxy_addr" coop-proxy-dpop 10
stop coop-proxy-dpop
stop dpopupstream

# --- Go benchmarks -------------------------------------------------------------
echo "go test -bench" >&2
gobench=$(go test -run '^$' -bench . -benchmem ./proxy/)

# --- report --------------------------------------------------------------------
declare -A cpu_rounds=([b]="${cpu[b]# }" [d]="${cpu[d]# }")
for label in a b c d e; do
	# shellcheck disable=SC2086 # the lists are space-separated numbers
	{
		cpu[$label]=$(median ${cpu[$label]})
		rps[$label]=$(median ${rps[$label]})
		p50[$label]=$(median ${p50[$label]})
		p99[$label]=$(median ${p99[$label]})
	}
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
rps_db=$(ratio "${rps[d]}" "${rps[b]}")
p99_db=$(ratio "${p99[d]}" "${p99[b]}")
rps_dc=$(ratio "${rps[d]}" "${rps[c]}")
p99_dc=$(ratio "${p99[d]}" "${p99[c]}")
cpu_db=$(ratio "${cpu[d]}" "${cpu[b]}")
verdict=$(awk -v c="$cpu_db" -v p="$p99_db" 'BEGIN { print (c <= 1.05 && p <= 1.10) ? "PASS" : "MISS" }')

nginx_version=$(nginx -v 2>&1)
wrk_version=$({ wrk -v 2>&1 || true; } | head -n 1)
section=$tmp/section.md
{
	echo "## Run at $(date +%H:%M:%S%z)"
	echo
	echo "- machine: $(nproc) cores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r);"
	echo "  load average before the run: $loadavg (other work on these cores makes p99 noisy)"
	echo "- $(go version), ${nginx_version#nginx version: }, ${wrk_version% Copyright*}"
	echo "- load: each target 2 s warm-up, then \`wrk ${wrk_args[*]:0:3}\` POST $api_path from core 1, (a) and (c)"
	echo "  for 10 s alone, (b) and (d) loaded together (a wrk each) in $bd_rounds rounds of 5 s (medians"
	echo "  shown); the COOP emulator and the proxies under test share core 0"
	echo
	echo "| target | | req/s | p50 (ms) | p99 (ms) | CPU µs/request | errors |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
	echo "| (a) | COOP emulator directly | ${rps[a]} | ${p50[a]} | ${p99[a]} | ${cpu[a]} (emulator) | ${errors[a]} |"
	echo "| (b) | bare httputil.ReverseProxy, pooled buffers | ${rps[b]} | ${p50[b]} | ${p99[b]} | ${cpu[b]} | ${errors[b]} |"
	echo "| (c) | nginx, 1 worker | ${rps[c]} | ${p50[c]} | ${p99[c]} | — | ${errors[c]} |"
	echo "| (d) | coop-proxy serve | ${rps[d]} | ${p50[d]} | ${p99[d]} | ${cpu[d]} | ${errors[d]} |"
	echo "| (e) | coop-proxy serve, DPoP (ES256 proof per request), DPoP upstream | ${rps[e]} | ${p50[e]} | ${p99[e]} | ${cpu[e]} | ${errors[e]} |"
	echo
	echo "CPU µs/request: utime + stime of the process under test (/proc/PID/stat) over a run, divided"
	echo "by the requests served (the emulator's own CPU is not counted for (b)-(d)); per round:"
	echo "(b) ${cpu_rounds[b]}, (d) ${cpu_rounds[d]}; (d)/(b) per round: $(paste -d' ' <(tr ' ' '\n' <<<"${cpu_rounds[b]}") <(tr ' ' '\n' <<<"${cpu_rounds[d]}") | awk '{ printf "%s%.3f", (NR > 1 ? " " : ""), $2 / $1 }')."
	echo
	echo "| ratio | throughput | p99 | CPU per request |"
	echo "| --- | ---: | ---: | ---: |"
	echo "| (d)/(b) | $rps_db | $p99_db | $cpu_db |"
	echo "| (d)/(c) | $rps_dc | $p99_dc | |"
	echo
	echo "target: (d) CPU per request ≤ 1.05 × (b), (d) p99 ≤ 1.10 × (b) p99 — **$verdict**"
	echo
	echo "(d) wrote $log_lines request log lines (JSON, info level). (e) ran alone for 10 s, after (d), before"
	echo "bench/dpopupstream, which verifies each proof on core 0 (slower than the emulator): compare"
	echo "its CPU µs/request with (d)'s, not its throughput."
	echo
	echo "### Go benchmarks (\`go test -run '^\$' -bench . -benchmem ./proxy/\`)"
	echo
	echo '```'
	echo "$gobench"
	echo '```'
	echo
} >"$section"

bash bench/append-results.sh "$section"

for label in a b c d e; do
	if ((errors[$label] > 0)); then
		echo "target ($label) had ${errors[$label]} errors: its numbers are not valid" >&2
		exit 1
	fi
done
