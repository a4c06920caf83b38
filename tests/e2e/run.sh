#!/bin/sh
# End-to-end tests of `astgate serve`: the official openai SDK and raw HTTP against astgate, which
# sits in front of a fake OpenAI upstream (fake-upstream.mjs). Needs Node >= 20 and npm.
#
#   tests/e2e/run.sh [BINARY]
#
# With BINARY (e.g. build/astgate) every test goes through `BINARY serve`. Without it only what can
# run against the fake upstream alone runs (the fake's self-checks, and the corpus tests expecting
# the replies unchanged); the proxy-only tests are skipped.
# Installs the pinned packages (npm ci from package-lock.json) when node_modules is not current,
# runs `node --test` on every *.test.mjs with the spec reporter, and ends with the line
#   e2e: P passed, F failed, S skipped
# Exit status 1 on any failure, 2 on bad usage or a failed install.
set -u

if [ $# -gt 1 ]; then
    echo "usage: $0 [BINARY]" >&2
    exit 2
fi

if [ $# -eq 1 ]; then
    bin=$1
    case $bin in
    /*) ;;
    */*) bin=$PWD/$bin ;;
    *) bin=$(command -v "$bin") || bin=$1 ;;
    esac
    if [ ! -x "$bin" ] || [ -d "$bin" ]; then
        echo "e2e: $bin: not an executable" >&2
        exit 2
    fi
    ASTGATE_BIN=$bin
    export ASTGATE_BIN
else
    unset ASTGATE_BIN
    echo "e2e: no BINARY given: running against the fake upstream only (proxy tests skipped)"
fi

here=$(cd "$(dirname "$0")" && pwd) || exit 2
ASTGATE_ROOT=$(cd "$here/../.." && pwd) || exit 2
export ASTGATE_ROOT
cd "$here" || exit 2

command -v node >/dev/null 2>&1 || { echo "e2e: node is not installed" >&2; exit 2; }
command -v npm >/dev/null 2>&1 || { echo "e2e: npm is not installed" >&2; exit 2; }

# (re)install only when the lock file changed since the last successful install
stamp=node_modules/.e2e-lock
if [ -f package-lock.json ]; then
    if ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
        npm ci --no-audit --no-fund --loglevel=error || { echo "e2e: npm ci failed" >&2; exit 2; }
        cp package-lock.json "$stamp"
    fi
else
    npm install --no-audit --no-fund --loglevel=error || { echo "e2e: npm install failed" >&2; exit 2; }
    cp package-lock.json "$stamp"
fi

tap=$(mktemp "${TMPDIR:-/tmp}/e2e-tap.XXXXXX") || exit 2
trap 'rm -f "$tap"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# spec on stdout for people, TAP to a file for the counts; a per-test guard against hangs
node --test --test-timeout=120000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    ./*.test.mjs
rc=$?

count() {
    sed -n "s/^# $1 \([0-9][0-9]*\)\$/\1/p" "$tap" | tail -n 1
}
pass=$(count pass)
fail=$(count fail)
cancelled=$(count cancelled)
skipped=$(count skipped)
pass=${pass:-0}
fail=$((${fail:-0} + ${cancelled:-0}))
skipped=${skipped:-0}
if [ $rc -ne 0 ] && [ "$fail" -eq 0 ]; then
    fail=1 # the runner failed outside any test (a file that does not load, a crash)
fi

echo
echo "e2e: $pass passed, $fail failed, $skipped skipped"
[ $rc -eq 0 ] && [ "$fail" -eq 0 ] || exit 1
exit 0
