#!/bin/sh
# Runs every test that `make test` covers: the C unit tests (built with ASan and UBSan), the
# golden corpus, the rule packs' tests (`astgate test`, and `ast-grep test` on the extension-free
# rules), the differential suite against the pinned ast-grep (tests/parity), the real-world shapes
# corpus (bench/accuracy/shapes, checked against its manifest) and the end-to-end tests
# (official SDKs against `astgate serve` in front of a fake upstream) through the sanitized binary,
# and the deploy/ checks (tests/deploy/run.sh: Kubernetes manifests, systemd unit, container image).
# Ends with one summary line; exits 1 on any failure.
#   tests/run.sh [BUILD_DIR]    (default build/asan)
set -u
dir=${1:-build/asan}
cd "$(dirname "$0")/.." || exit 2
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

unit_pass=0
unit_fail=0
bad=0
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
    unit_pass=$((unit_pass + ${p:-0}))
    unit_fail=$((unit_fail + ${f:-0}))
    if [ $rc -ne 0 ]; then
        bad=1
        [ -z "$f" ] && unit_fail=$((unit_fail + 1))
    fi
done

golden_out=$(tests/golden/run.sh "$dir/astgate" 2>&1)
rc=$?
printf '%s\n' "$golden_out" | grep -v '^ok ' 
[ $rc -ne 0 ] && bad=1
g=$(printf '%s\n' "$golden_out" | sed -n 's/^golden: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p')
gp=${g% *}
gf=${g#* }

# the rule packs' own tests (sgconfig.yml: rules/ against rule-tests/ and their snapshots) through
# `astgate test`; then the pinned ast-grep CLI (bench/) on the same files for the rules without
# astgate extensions (rules/examples/, and the flag rules of rules/secrets.yaml), whose snapshots
# both must agree on
rt_out=$("$dir/astgate" test -c sgconfig.yml 2>&1)
rc=$?
printf '%s\n' "$rt_out" | grep -v '^PASS '
[ $rc -ne 0 ] && bad=1
rt=$(printf '%s\n' "$rt_out" | sed -n 's/^test: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p')
rtp=${rt% *}
rtf=${rt#* }
[ -z "$rt" ] && rtf=1
sg=bench/node_modules/.bin/ast-grep
# every rule (one per YAML document of rules/**) that uses no astgate extension that changes what
# it matches or writes (metadata.astgate holding only `redact` or `hint`, which change logs and
# requests, still counts as none; any other key, or a flow-style block, as one): ast-grep must
# agree with astgate on their tests
sg_ids=$(find rules -name '*.yml' -o -name '*.yaml' | sort | xargs awk '
    FNR == 1 || /^---/ { if (id != "" && !ext) print id; id = ""; ext = 0; ag = 0 }
    /^id:/ { id = $2; gsub(/["\047]/, "", id) }
    ag && /^[^ ]/ { ag = 0 }
    ag && /^  [^ ]/ { ag = 0 }
    ag && /^    [A-Za-z_]+:/ && !/^    (redact|hint):/ { ext = 1 }
    /^  astgate:/ { ag = 1; if ($0 !~ /^  astgate: *(#.*)?$/) ext = 1 }
    END { if (id != "" && !ext) print id }' | paste -sd '|' -)
# the pinned CLI (bench/package-lock.json: version and hashes), installed when missing
if [ ! -x "$sg" ] && command -v npm >/dev/null 2>&1; then
    (cd bench && npm ci --no-audit --no-fund --loglevel=error) >/dev/null 2>&1 ||
        echo "rule-tests: npm ci in bench/ failed: ast-grep test is skipped"
fi
if [ ! -x "$sg" ]; then
    parity="skipped: no $sg (npm ci in bench/ failed or npm is missing)"
elif sg_out=$("$sg" test -c sgconfig.yml --filter "^($sg_ids)\$" --color never 2>&1); then
    parity=ok
else
    printf '%s\n' "$sg_out"
    parity=failed
    bad=1
fi
echo "rule-tests: ast-grep test on the rules without astgate extensions ($(echo "$sg_ids" | tr '|' ' ')): $parity"

# the differential suite (tests/parity): astgate scan and the pinned ast-grep on the same rules
# and inputs, matches and fixed files compared; skipped, like the above, without ast-grep
if [ -x "$sg" ]; then
    par_out=$(tests/parity/run.sh "$dir/astgate" "$sg" 2>&1)
    rc=$?
    printf '%s\n' "$par_out" | grep -E '^(not ok|parity:)|✖|^[[:space:]]*[+-] ' | tail -n 60
    [ $rc -ne 0 ] && bad=1
    pr=$(printf '%s\n' "$par_out" | sed -n 's/^parity: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) todo$/\1 \2 \3/p' | tail -n 1)
    [ -z "$pr" ] && pr="0 1 0"
    pp=${pr%% *}
    pt=${pr##* }
    pf=${pr#* }
    pf=${pf%% *}
    par="$pp passed, $pf failed"
    [ "$pt" -gt 0 ] && par="$par ($pt open astgate bugs: todo)"
else
    par="skipped"
    echo "parity: skipped: no $sg (npm ci in bench/ failed or npm is missing)"
fi

# the real-world shapes corpus against its manifest: no silent miss (bench/accuracy/shapes)
shapes_out=$(node bench/accuracy/shapes/check.mjs "$dir/astgate" 2>&1)
rc=$?
printf '%s\n' "$shapes_out" | tail -n 20
[ $rc -ne 0 ] && bad=1
sm=$(printf '%s\n' "$shapes_out" | sed -n 's/^shapes: .*, \([0-9]*\) mismatched$/\1/p' | tail -n 1)
[ -z "$sm" ] && sm=1

e2e_out=$(tests/e2e/run.sh "$dir/astgate" 2>&1)
rc=$?
printf '%s\n' "$e2e_out" | grep -E '^(not ok|# Subtest|e2e:)|✖' | grep -v '^# Subtest' | tail -n 40
[ $rc -ne 0 ] && bad=1
e=$(printf '%s\n' "$e2e_out" | sed -n 's/^e2e: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' | tail -n 1)
ep=${e% *}
ef=${e#* }
[ -z "$e" ] && ef=1

# deploy/ (tests/deploy): the Kubernetes manifests against their schemas, the systemd unit, and the
# container image built by `make image` (podman), checked without running a container
deploy_out=$(tests/deploy/run.sh 2>&1)
rc=$?
printf '%s\n' "$deploy_out" | grep -E '^(ok|not ok|skip) - |^deploy:'
[ $rc -ne 0 ] && bad=1
dr=$(printf '%s\n' "$deploy_out" | sed -n 's/^deploy: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' | tail -n 1)
dp=${dr% *}
df=${dr#* }
[ -z "$dr" ] && df=1

echo
echo "tests: unit ${unit_pass} passed, ${unit_fail} failed; golden ${gp:-0} passed, ${gf:-0} failed;" \
    "rule-tests ${rtp:-0} passed, ${rtf:-0} failed (ast-grep: ${parity%%:*});" \
    "parity ${par};" \
    "shapes ${sm} mismatched; e2e ${ep:-0} passed, ${ef:-0} failed; deploy ${dp:-0} passed, ${df:-0} failed"
exit $bad
