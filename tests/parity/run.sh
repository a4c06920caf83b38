#!/bin/sh
# The differential suite (parity.test.mjs): every case in cases/ through `astgate scan` and the
# pinned ast-grep CLI (bench/package-lock.json), matches and fixed files compared.
#
#   tests/parity/run.sh [BINARY [AST_GREP]]   (defaults: build/astgate, bench/node_modules/.bin/ast-grep)
#
# Ends with the line
#   parity: P passed, F failed, T todo          or    parity: skipped: REASON
# T counts the cases known-differences.json lists as open astgate bugs. Exit status 1 on any
# failure, 2 on bad usage; 0 when skipped (no ast-grep: npm ci in bench/ failed or npm is missing).
set -u
if [ $# -gt 2 ]; then
    echo "usage: $0 [BINARY [AST_GREP]]" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd) || exit 2
abs() {
    case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
    esac
}
bin=$(abs "${1:-$root/build/astgate}")
sg=$(abs "${2:-$root/bench/node_modules/.bin/ast-grep}")
if [ ! -x "$bin" ] || [ -d "$bin" ]; then
    echo "parity: $bin: not an executable" >&2
    exit 2
fi
command -v node >/dev/null 2>&1 || { echo "parity: skipped: node is not installed"; exit 0; }
if [ ! -x "$sg" ]; then
    echo "parity: skipped: no $sg (npm ci in bench/ failed or npm is missing)"
    exit 0
fi
tap=$(mktemp "${TMPDIR:-/tmp}/parity-tap.XXXXXX") || exit 2
trap 'rm -f "$tap"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ASTGATE_BIN=$bin AST_GREP_BIN=$sg node --test --test-timeout=900000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    "$root/tests/parity/parity.test.mjs"
rc=$?
count() {
    sed -n "s/^# $1 \([0-9][0-9]*\)\$/\1/p" "$tap" | tail -n 1
}
pass=$(count pass)
fail=$(count fail)
cancelled=$(count cancelled)
todo=$(count todo)
pass=${pass:-0}
fail=$((${fail:-0} + ${cancelled:-0}))
todo=${todo:-0}
if [ $rc -ne 0 ] && [ "$fail" -eq 0 ]; then
    fail=1 # the runner failed outside any test (a file that does not load, a crash)
fi
echo
echo "parity: $pass passed, $fail failed, $todo todo"
[ $rc -eq 0 ] && [ "$fail" -eq 0 ] || exit 1
exit 0
