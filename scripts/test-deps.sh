#!/usr/bin/env bash
# What `make test` needs beyond Go: Chromium, for the login tests in a real
# browser (internal/browsertest), redis-server, for the Redis token store
# (internal/redistest), and zsh and fish, whose completion scripts are checked
# (cmd/coop-proxy completion_test.go). Installs the missing ones from Debian
# with apt-get: chromium when neither chromium nor chromium-browser is on
# PATH, the others when they are not; does nothing otherwise.
set -euo pipefail
packages=()
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
	packages+=(chromium)
fi
for program in redis-server zsh fish; do
	command -v "$program" >/dev/null || packages+=("$program")
done
if [ ${#packages[@]} -eq 0 ]; then
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "test-deps: the tests need ${packages[*]} (Chromium for the browser tests, as chromium or chromium-browser on PATH; redis-server for the Redis store; zsh and fish for the completion tests): install them, then run make test again" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "test-deps: the tests need ${packages[*]}: as root, run apt-get install ${packages[*]}, then make test again" >&2
		exit 1
	fi
	sudo=(sudo)
fi
echo "test-deps: installing ${packages[*]} with apt-get, for the tests" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
