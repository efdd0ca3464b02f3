#!/usr/bin/env bash
# bench/append-results.sh SECTION: append the Markdown file SECTION to
# bench/results/YYYY-MM-DD.md (made with its title when missing), and show
# it. Used by bench/run.sh and bench/replicas.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
results=bench/results/$(date +%F).md
mkdir -p bench/results
if [[ ! -e $results ]]; then
	# shellcheck disable=SC2016 # the backquotes are Markdown
	printf '# coop-proxy benchmark, %s\n\nMade by `make bench` (bench/run.sh, bench/replicas.sh).\n\n' "$(date +%F)" >"$results"
fi
cat "$1" >>"$results"
cat "$1"
echo "results appended to $results" >&2
