#!/usr/bin/env bash
# Streamed code without the freeze (issue 14): how long streamed code waits in astgate, per hold
# policy (`stream: {hold: block}`, today's whole-block hold, and `{hold: minimal}`), next to the
# same replies streamed directly. bench/hold/hold.js does the work (see its header): a fake
# upstream streams every golden reply (tests/golden/*/input.md, tool-call cases left out) as Chat
# Completions SSE at ~800 characters per second in deltas of 4-8, a client records when each
# character arrives; per mode: the share of code characters the client had before the upstream
# sent the block's closing fence, the median delay of a code character against the median time a
# block takes to stream, the prose delay, astgate's CPU per reply. Everything on 127.0.0.1; every
# server is started and stopped by the run.
#
#   bench/run-hold.sh                       builds (make all), then 5 rounds of every mode
#
# A binary that refuses the `stream` key (before the hold policy landed) runs `block` with no
# `stream` key, its only behaviour, and `minimal` is skipped (the run says so).
# Knobs: HOLD_MAKE (1; 0: do not run make, e.g. while someone else's edit breaks the build),
# HOLD_ASTGATE (build/astgate; copied to a temporary directory before the run, so a rebuild
# meanwhile cannot touch it), HOLD_WALL (300: seconds before the run is stopped), and those of
# bench/hold/hold.js: HOLD_ROUNDS (5), HOLD_CONC (8), HOLD_RATE (800), HOLD_MIN (4), HOLD_MAX (8),
# HOLD_MODES (direct,block,minimal), HOLD_FILTER, HOLD_OUT (bench/out/hold), HOLD_TIMEOUT (280).
# Output: the table on stdout, bench/out/hold/{hold.json,summary.txt} and astgate's logs there.
# bench/RESULTS.md ("Streamed code without the freeze") records runs. About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null; then
    echo "run-hold: node is needed" >&2
    exit 1
fi
if [ "${HOLD_MAKE:-1}" != 0 ]; then
    echo "== make all"
    if ! make all; then
        echo "run-hold: make all failed; if the failure is in a file being edited, retry later or" \
            "run with HOLD_MAKE=0 HOLD_ASTGATE=<a built copy>" >&2
        exit 1
    fi
    echo
fi
src=${HOLD_ASTGATE:-build/astgate}
if [ ! -x "$src" ]; then
    echo "run-hold: $src: not an executable (run make first)" >&2
    exit 1
fi

tmp=$(mktemp -d /tmp/astgate-hold.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp "$src" "$tmp/astgate"

echo "== machine and revision"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
echo "kernel: $(uname -r); node $(node --version)"
dirty=$(git status --porcelain -- src 2>/dev/null | wc -l)
echo "commit: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100)" \
    "$([ "$dirty" -gt 0 ] && echo "(+ $dirty uncommitted file(s) under src/)")"
echo "binary: $src ($(stat -c '%y' "$src" | cut -d. -f1), sha256 $(sha256sum "$src" | cut -c1-12)," \
    "$("$tmp/astgate" --version 2>/dev/null || echo 'version ?'))"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

rc=0
HOLD_ASTGATE="$tmp/astgate" timeout "${HOLD_WALL:-300}" node bench/hold/hold.js || rc=$?
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$rc" = 124 ]; then
    echo "run-hold: stopped after ${HOLD_WALL:-300} s" >&2
fi
exit "$rc"
