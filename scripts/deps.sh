#!/bin/sh
# Installs the Debian packages astgate builds and tests with, when they are missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -eu
pkgs="gcc make pkg-config curl ca-certificates openssl libtree-sitter-dev libyaml-dev libpcre2-dev \
libevent-dev libcurl4-openssl-dev libjansson-dev libcmocka-dev node-llhttp"
case "${1:-}" in
fuzz) pkgs="$pkgs clang-14 libclang-rt-14-dev" ;;
esac
# the end-to-end tests run on Node.js with npm (the machine's own, or Debian's)
command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
# the deploy tests (tests/deploy/run.sh): podman builds the image (FROM scratch: no daemon, no
# registry), systemd-analyze verifies the unit, logrotate reads its snippet; the e2e test of
# `astgate eval --html` (tests/e2e/eval-report.test.mjs) opens the page in headless chromium.
# Installed as root; for another user their absence only skips those checks, each with the reason
if [ "$(id -u)" -eq 0 ]; then
    pkgs="$pkgs podman systemd logrotate chromium"
fi
missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "astgate: missing Debian packages:$missing" >&2
    echo "install them with: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "astgate: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
