#!/usr/bin/env bash
# What `make test` needs beyond Go: Chromium, for the login tests in a real
# browser (internal/browsertest), and zsh and fish, whose completion scripts
# are checked (cmd/coop-proxy completion_test.go). Installs the missing ones
# with apt-get (Debian's chromium, zsh, fish); does nothing otherwise.
set -euo pipefail
pkgs=()
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
	pkgs+=(chromium)
fi
for shell in zsh fish; do
	command -v "$shell" >/dev/null || pkgs+=("$shell")
done
if ((${#pkgs[@]} == 0)); then
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "test-deps: the tests need ${pkgs[*]}: install them (Chromium as chromium or chromium-browser on PATH), then run make test again" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "test-deps: the tests need ${pkgs[*]}: as root, run apt-get install ${pkgs[*]}, then make test again" >&2
		exit 1
	fi
	sudo=(sudo)
fi
echo "test-deps: installing ${pkgs[*]} with apt-get, for the tests" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
