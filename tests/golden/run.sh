#!/bin/sh
# Golden tests for the rewrite engine.
#
#   tests/golden/run.sh BINARY [FILTER]
#
# Each case is a folder tests/golden/NNN-name/ holding input.md (a model reply), and optionally
# expected.md (the exact output; absent = the reply must come out byte for byte unchanged),
# expected.jsonl (the exact audit lines, without their "time" and "file" members; absent = not
# checked), rules.yaml (rules to use instead of rules/mastra.yaml) and note.txt (what the case
# checks). GOLDEN_BLESS=1 writes expected.md (when the output differs from the input) and
# expected.jsonl from what the binary does: review the diff before committing it.
# For every case this runs
#   BINARY rewrite --rules RULES --log LOG CASE/input.md
# and compares stdout with the expected bytes using cmp.
# A tool-call case has tool.txt instead: its first line is the tool's name, its optional second
# line the --input kind (args, text, patch-create:PATH, patch-update:PATH); the input is
# input.json (or input.txt), the expected output expected.json (or expected.txt), and the
# command
#   BINARY rewrite --tool NAME [--input KIND] --rules RULES --log LOG CASE/input.json A case also fails when the binary exits
# non-zero (sanitizer reports, crashes) or runs longer than GOLDEN_TIMEOUT seconds (default 30).
# FILTER, if given, runs only the cases whose folder name contains it.
# Output: "ok N - name" / "not ok N - name" with a diff (CR shown as ^M, tab as ^I, line ends as $),
# then "1..N" and the summary line "golden: P passed, F failed". Exit status 1 on any failure,
# 2 on bad usage.
set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BINARY [FILTER]" >&2
    exit 2
fi
bin=$1
filter=${2:-}

# resolve the binary before moving to the repository root
case $bin in
/*) ;;
*/*) bin=$PWD/$bin ;;
*) bin=$(command -v "$bin") || bin=$1 ;;
esac
if [ ! -x "$bin" ]; then
    echo "golden: $bin: not an executable" >&2
    exit 2
fi

cd "$(dirname "$0")/../.." || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

limit=${GOLDEN_TIMEOUT:-30}
runner=
if command -v timeout >/dev/null 2>&1; then
    runner="timeout $limit"
fi

# make CR, tabs and line ends visible without mangling UTF-8 (unlike cat -A)
visible() {
    awk '{ gsub(/\r/, "^M"); gsub(/\t/, "^I"); print "#   " $0 "$" }'
}

# first lines of a file as TAP comments
excerpt() {
    head -n 20 "$1" | awk '{ print "#   " $0 }'
}

n=0
pass=0
fail=0
for dir in tests/golden/*/; do
    dir=${dir%/}
    name=${dir##*/}
    if [ -n "$filter" ]; then
        case $name in
        *"$filter"*) ;;
        *) continue ;;
        esac
    fi
    n=$((n + 1))
    rules=rules/mastra.yaml
    [ -f "$dir/rules.yaml" ] && rules=$dir/rules.yaml
    ext=md
    if [ -f "$dir/tool.txt" ]; then
        ext=json
        [ -f "$dir/input.json" ] || ext=txt
        tool=$(sed -n 1p "$dir/tool.txt")
        kind=$(sed -n 2p "$dir/tool.txt")
        set -- --tool "$tool" --input "${kind:-args}"
    else
        set --
    fi
    input=$dir/input.$ext
    if [ ! -f "$input" ]; then
        fail=$((fail + 1))
        echo "not ok $n - $name # no ${input##*/}"
        continue
    fi
    want=$dir/expected.$ext
    [ -f "$want" ] || want=$input

    : >"$tmp/log"
    $runner "$bin" rewrite "$@" --rules "$rules" --log "$tmp/log" "$input" \
        >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    # the audit lines without what changes from run to run
    sed -e 's/^{"time":"[^"]*",/{/' -e 's/^{"file":"[^"]*",/{/' "$tmp/log" >"$tmp/audit"
    if [ "${GOLDEN_BLESS:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
        if cmp -s "$input" "$tmp/out"; then rm -f "$dir/expected.$ext"; else cp "$tmp/out" "$dir/expected.$ext"; fi
        cp "$tmp/audit" "$dir/expected.jsonl"
        want=$dir/expected.$ext
        [ -f "$want" ] || want=$input
    fi
    audit_ok=1
    if [ -f "$dir/expected.jsonl" ] && ! cmp -s "$dir/expected.jsonl" "$tmp/audit"; then
        audit_ok=0
    fi

    if [ "$rc" -eq 0 ] && [ "$audit_ok" -eq 1 ] && cmp -s "$want" "$tmp/out"; then
        pass=$((pass + 1))
        echo "ok $n - $name"
        continue
    fi
    fail=$((fail + 1))
    echo "not ok $n - $name"
    [ -f "$dir/note.txt" ] && echo "#   checks: $(cat "$dir/note.txt")"
    echo "#   command: $bin rewrite $* --rules $rules --log LOG $input"
    if [ "$rc" -eq 124 ] && [ -n "$runner" ]; then
        echo "#   timed out after ${limit}s"
    elif [ "$rc" -ne 0 ]; then
        echo "#   exit status $rc"
    fi
    if ! cmp -s "$want" "$tmp/out"; then
        echo "#   stdout differs from $want (--- expected, +++ actual):"
        diff -u "$want" "$tmp/out" | visible
    fi
    if [ "$audit_ok" -eq 0 ]; then
        echo "#   audit lines differ from $dir/expected.jsonl (--- expected, +++ actual):"
        diff -u "$dir/expected.jsonl" "$tmp/audit" | visible
    fi
    if [ -s "$tmp/err" ]; then
        echo "#   stderr:"
        excerpt "$tmp/err"
    fi
    if [ -s "$tmp/log" ]; then
        echo "#   log:"
        excerpt "$tmp/log"
    fi
done

echo "1..$n"
echo "golden: $pass passed, $fail failed"
if [ "$n" -eq 0 ]; then
    echo "golden: no cases matched" >&2
    exit 1
fi
[ "$fail" -eq 0 ] || exit 1
exit 0
