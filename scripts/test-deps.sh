#!/usr/bin/env bash
# What `make test` needs beyond Go: Chromium, for the login tests in a real
# browser (internal/browsertest). Installs Debian's chromium with apt-get when
# neither chromium nor chromium-browser is on PATH; does nothing otherwise.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "test-deps: the browser tests need Chromium: install it (as chromium or chromium-browser on PATH), then run make test again" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "test-deps: the browser tests need Chromium: as root, run apt-get install chromium, then make test again" >&2
		exit 1
	fi
	sudo=(sudo)
fi
echo "test-deps: installing chromium with apt-get, for the browser tests" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
