#!/bin/sh
# Debian's chromium for the browser tests (tests/browser/), named by the README's test
# command and so run by .ci/run. Playwright drives it with executable_path: its own browser
# download is not used. Does nothing when a chromium is already on PATH; where it cannot
# install (not root, no apt-get: a Mac, a developer's account) it says so and the browser
# tests skip with the reason.
set -eu
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: no chromium, and no apt-get as root to install it; the browser tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "install_chromium: $(chromium --version 2>/dev/null || echo chromium installed)"
