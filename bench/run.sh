#!/usr/bin/env bash
# Benchmark of the rewrite engine (`make bench`; needs build/libastgate.a and build/grammar/*.o).
#
#   1. bench_rewrite: the engine next to tree-sitter's bare parse of the same blocks, in one
#      process, passes alternating; medians of BENCH_REPS samples of BENCH_ITERS corpus passes.
#   2. ast-grep (npm @ast-grep/cli, pinned in bench/package.json, installed into
#      bench/node_modules) with bench/ast-grep/, the same Mastra rule written with ast-grep
#      fixes, on the corpus's TS blocks extracted to bench/out/blocks/NNN-B.ts[x]:
#      how many of the engine's rewrites it reproduces, one process per reply, and one process
#      over the whole directory.
#   3. callgrind instruction counts, engine vs bare parse (BENCH_CALLGRIND=0 skips).
# Corpus: tests/golden/*/input.md with rules/mastra.yaml. Output on stdout; bench/RESULTS.md
# records a run. Knobs: BENCH_REPS (7), BENCH_ITERS (20), BENCH_AG_REPS (5), BENCH_AG_RUNS (10),
# BENCH_CALLGRIND (1), CC (cc), BENCH_LIBS (-ltree-sitter -lyaml -lpcre2-8 -lm).
# Takes 1-1.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${BENCH_REPS:-7}
iters=${BENCH_ITERS:-20}
ag_reps=${BENCH_AG_REPS:-5}
ag_runs=${BENCH_AG_RUNS:-10}
cc=${CC:-cc}
out=bench/out
rules=rules/mastra.yaml
corpus=(tests/golden/*/input.md)
copies=20 # the corpus replicated for ast-grep's steady-state throughput

for f in build/libastgate.a build/grammar/ts_parser.o build/astgate; do
    if [ ! -f "$f" ]; then
        echo "bench: $f missing: run make first" >&2
        exit 1
    fi
done

median() { # numbers on stdin, one a line
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
        else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
now_us() {
    local t=$EPOCHREALTIME
    echo "${t/[.,]/}"
}

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
echo "kernel: $(uname -r); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "compiler: $($cc --version | head -1)"
echo "tree-sitter runtime: $(dpkg-query -W -f='${Version}' libtree-sitter0 2>/dev/null || echo '?')"
echo

echo "== build"
mkdir -p "$out"
read -ra libs <<<"${BENCH_LIBS:--ltree-sitter -lyaml -lpcre2-8 -lm}"
cmd=("$cc" -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes
    -Wno-unused-parameter -Isrc -Isrc/base -Isrc/engine -Isrc/proxy -Isrc/api bench/bench_rewrite.c build/libastgate.a build/grammar/ts_parser.o
    build/grammar/ts_scanner.o build/grammar/tsx_parser.o build/grammar/tsx_scanner.o
    "${libs[@]}" -o "$out/bench_rewrite")
echo "${cmd[*]}"
"${cmd[@]}"
cp build/astgate "$out/astgate" # a snapshot: make may relink build/astgate meanwhile
echo

echo "== engine vs bare tree-sitter parse ($out/bench_rewrite --reps $reps --iters $iters" \
    "--rules $rules tests/golden/*/input.md)"
"$out/bench_rewrite" --reps "$reps" --iters "$iters" --rules "$rules" "${corpus[@]}" |
    tee "$out/engine.txt"
echo

# ---- ast-grep ----
ag=bench/node_modules/.bin/ast-grep
want=$(sed -n 's/.*"@ast-grep\/cli": "\(.*\)".*/\1/p' bench/package.json)
if [ ! -x "$ag" ] || [ "$("$ag" --version 2>/dev/null)" != "ast-grep $want" ]; then
    if ! command -v npm >/dev/null; then
        echo "bench: npm is needed to install @ast-grep/cli (apt-get install npm)" >&2
        exit 1
    fi
    echo "== npm ci (bench/node_modules, @ast-grep/cli $want)"
    (cd bench && npm ci --no-audit --no-fund --loglevel=error)
    echo
fi
echo "== ast-grep: $("$ag" --version)"

# blocks as files; the engine's rewrite of each block beside them
rm -rf "$out/blocks" "$out/expected" "$out/fixed" "$out/blocks-x$copies" "$out/sg"
"$out/bench_rewrite" --rules "$rules" --extract "$out" "${corpus[@]}"
# the rule set: bench/ast-grep plus a Tsx twin of each file (ast-grep runs a rule on one language)
mkdir -p "$out/sg"
cp -r bench/ast-grep/. "$out/sg/"
for d in rules utils; do
    for f in bench/ast-grep/"$d"/*.yml; do
        sed -e 's/^language: TypeScript$/language: Tsx/' -e 's/^id: \(.*\)$/id: \1-tsx/' \
            -e 's/matches: \([a-z-]*\)/matches: \1-tsx/g' "$f" >"$out/sg/$d/$(basename "$f" .yml)-tsx.yml"
    done
done
sg=(scan -c "$out/sg/sgconfig.yml" --json=compact)
echo "command: $ag ${sg[*]} PATHS (exit status 1 = error-level matches found)"

# the same rewrites? apply ast-grep's fixes to a copy and compare block by block
cp -r "$out/blocks" "$out/fixed"
"$ag" scan -c "$out/sg/sgconfig.yml" -U "$out/fixed" >/dev/null 2>&1 || true
nblocks=0 changed=0 same=0 missed=()
for f in "$out"/expected/*; do
    b=${f##*/}
    nblocks=$((nblocks + 1))
    cmp -s "$f" "$out/blocks/$b" && continue
    changed=$((changed + 1))
    if cmp -s "$f" "$out/fixed/$b"; then
        same=$((same + 1))
    else
        missed+=("$(awk -F'\t' -v r="${b%%-*}" '$1 == r { split($2, p, "/"); print p[3] }' \
            "$out/replies.tsv")")
    fi
done
extra=0
for f in "$out"/expected/*; do
    b=${f##*/}
    if cmp -s "$f" "$out/blocks/$b" && ! cmp -s "$f" "$out/fixed/$b"; then
        extra=$((extra + 1))
        missed+=("${b} (ast-grep changed a block the engine left alone)")
    fi
done
echo "fidelity: the engine changes $changed of $nblocks blocks; ast-grep -U produces the same" \
    "bytes for $same of them; $extra blocks changed by ast-grep only"
for m in "${missed[@]}"; do
    echo "  differs: $m"
done

# one ast-grep process per reply (replies with at least one block), astgate's CLI likewise
: >"$out/per-reply.txt"
mapfile -t ids < <(awk -F'\t' '$3 > 0 { print $1 "\t" $2 }' "$out/replies.tsv")
for ((r = 0; r < ag_reps; r++)); do
    for line in "${ids[@]}"; do
        id=${line%%$'\t'*}
        path=${line#*$'\t'}
        files=("$out/blocks/$id"-*)
        t0=$(now_us)
        rc=0
        "$ag" "${sg[@]}" "${files[@]}" >/dev/null 2>&1 || rc=$?
        t1=$(now_us)
        if [ "$rc" -gt 1 ]; then
            echo "bench: ast-grep failed ($rc) on ${files[*]}" >&2
            exit 1
        fi
        "$out/astgate" rewrite --rules "$rules" --log /dev/null "$path" >/dev/null
        t2=$(now_us)
        echo "ast-grep $id $((t1 - t0))" >>"$out/per-reply.txt"
        echo "astgate $id $((t2 - t1))" >>"$out/per-reply.txt"
    done
done
per_reply() { # tool: median over replies of each reply's median over repetitions, in us
    awk -v t="$1" '$1 == t { print $2, $3 }' "$out/per-reply.txt" | sort -k1,1 -k2,2g |
        awk '$1 != id && NR > 1 { print (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2); n = 0 }
             { id = $1; v[++n] = $2 }
             END { if (n) print (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2) }' | median
}
ag_reply_us=$(per_reply ast-grep)
cli_reply_us=$(per_reply astgate)
echo "one process per reply (${#ids[@]} replies x $ag_reps, median of per-reply medians):" \
    "ast-grep $(awk -v v="$ag_reply_us" 'BEGIN { printf "%.2f", v / 1000 }') ms," \
    "astgate CLI $(awk -v v="$cli_reply_us" 'BEGIN { printf "%.2f", v / 1000 }') ms"

# one ast-grep process over the whole directory (as is, and the corpus x$copies for its steady
# state), each run paired with an engine run of as many corpus passes in the same round
for ((c = 0; c < copies; c++)); do
    mkdir -p "$out/blocks-x$copies/$c"
    cp "$out"/blocks/* "$out/blocks-x$copies/$c/"
done
: >"$out/empty.ts"
dir_cmds=(
    "startup|$out/empty.ts"
    "dir|$out/blocks"
    "dir-j1|-j 1 $out/blocks"
    "x$copies|$out/blocks-x$copies"
    "x$copies-j1|-j 1 $out/blocks-x$copies"
)
echo "commands (each run $ag_runs times, one round = each command once, then" \
    "$out/bench_rewrite --only engine --reps 3 --iters $copies):"
for c in "${dir_cmds[@]}"; do
    echo "  ${c%%|*}: $ag ${sg[*]} ${c#*|}"
done
: >"$out/dir.txt"
for c in "${dir_cmds[@]}"; do # warm-up (page cache)
    read -ra args <<<"${c#*|}"
    "$ag" "${sg[@]}" "${args[@]}" >/dev/null 2>&1 || true
done
for ((r = 0; r < ag_runs; r++)); do
    for c in "${dir_cmds[@]}"; do
        read -ra args <<<"${c#*|}"
        t0=$(now_us)
        "$ag" "${sg[@]}" "${args[@]}" >/dev/null 2>&1 || true
        echo "$r ${c%%|*} $(($(now_us) - t0))" >>"$out/dir.txt"
    done
    e=$("$out/bench_rewrite" --only engine --reps 3 --iters "$copies" --rules "$rules" \
        "${corpus[@]}" | awk '/^pass_us/ { print $3 }')
    echo "$r engine $e" >>"$out/dir.txt"
done
bytes=$(cat "${corpus[@]}" | wc -c)
code=$(cat "$out"/blocks/* | wc -c)
# per round: us per corpus for each tool, and its ratio to the round's engine pass
awk -v n="${#corpus[@]}" -v b="$bytes" -v code="$code" -v copies="$copies" -v runs="$ag_runs" '
    function med(arr, k,   i, j, t) {
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
        return k % 2 ? arr[(k + 1) / 2] : (arr[k / 2] + arr[k / 2 + 1]) / 2
    }
    { t[$1, $2] = $3 }
    END {
        split("engine startup dir dir-j1 x" copies " x" copies "-j1", names, " ")
        label["engine"] = "engine in-process (bench_rewrite)"
        label["startup"] = "ast-grep startup: one empty file"
        label["dir"] = "ast-grep scan blocks/"
        label["dir-j1"] = "ast-grep scan -j 1 blocks/"
        label["x" copies] = "ast-grep scan blocks-x" copies "/ (per copy)"
        label["x" copies "-j1"] = "ast-grep scan -j 1 blocks-x" copies "/ (per copy)"
        printf "one process over the directory; medians of %d rounds; a corpus = %d replies, %d bytes (%d bytes of code)\n", runs, n, b, code
        printf "  %-42s %9s %10s %8s %10s\n", "", "ms/corpus", "replies/s", "MB/s", "/ engine"
        for (i = 1; i <= 6; i++) {
            nm = names[i]
            for (r = 0; r < runs; r++) {
                us = t[r, nm]
                if (nm ~ /^x/) us /= copies
                v[r + 1] = us
                q[r + 1] = nm == "engine" ? 1 : us / t[r, "engine"]
            }
            m = med(v, runs); rq = med(q, runs)
            if (nm == "startup")
                printf "  %-42s %9.2f\n", label[nm], m / 1000
            else
                printf "  %-42s %9.2f %10.0f %8.2f %10.2f\n", label[nm], m / 1000, n / m * 1e6, b / m, rq
            print nm, m, rq > "'"$out"'/dir-summary.txt"
        }
    }' "$out/dir.txt"
echo

# ---- callgrind ----
cg_ratio=''
cg_ratio_sub=''
if [ "${BENCH_CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
    echo "== callgrind (instructions in engine_pass vs parse_pass; 3 warm-up passes + 1)"
    mapfile -t parsed_corpus < <(awk -F'\t' '$4 > 0 { print $2 }' "$out/replies.tsv")
    declare -A ir
    for set in all parsed; do
        if [ "$set" = all ]; then files=("${corpus[@]}"); else files=("${parsed_corpus[@]}"); fi
        for side in engine parse; do
            c=(valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$set.$side"
                --toggle-collect="${side}_pass" "$out/bench_rewrite" --only "$side" --reps 1
                --iters 1 --rules "$rules" "${files[@]}")
            echo "command: ${c[*]:0:4} $out/bench_rewrite --only $side --reps 1 --iters 1" \
                "--rules $rules (${#files[@]} replies)"
            ir[$set.$side]=$("${c[@]}" 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        done
    done
    cg_ratio=$(awk -v e="${ir[all.engine]}" -v p="${ir[all.parse]}" 'BEGIN { printf "%.3f", p / e }')
    cg_ratio_sub=$(awk -v e="${ir[parsed.engine]}" -v p="${ir[parsed.parse]}" \
        'BEGIN { printf "%.3f", p / e }')
    awk -v e="${ir[all.engine]}" -v p="${ir[all.parse]}" -v r="$cg_ratio" \
        -v es="${ir[parsed.engine]}" -v ps="${ir[parsed.parse]}" -v rs="$cg_ratio_sub" \
        -v n="${#corpus[@]}" -v ns="${#parsed_corpus[@]}" 'BEGIN {
        printf "per corpus pass, all %d replies: engine %.2f M instructions, bare parse %.2f M; parse/engine %s\n", n, e / 4e6, p / 4e6, r
        printf "per corpus pass, the %d replies the engine parses: engine %.2f M, bare parse %.2f M; parse/engine %s\n", ns, es / 4e6, ps / 4e6, rs }'
    echo "engine (all replies), inclusive instructions of its main steps (callgrind_annotate):"
    callgrind_annotate --inclusive=yes "$out/callgrind.all.engine" 2>/dev/null |
        grep -E ':(process_block|errors_after|ag_flat_build|scan[.a-z0-9]*|ag_ensure_run|ts_parser_parse_string|ts_tree_delete) \[' |
        sed -e 's/ \[.*//' -e 's/[^ ]*://' -e 's/^/  /' || true
    echo
fi

echo "== summary"
read -r _ _ n_all _ _ ratio_all < <(grep '^result all ' "$out/engine.txt")
read -r _ _ n_sub _ _ ratio_sub < <(grep '^result parsed ' "$out/engine.txt")
eng_lat=$(sed -n 's/^engine latency per reply.*: median \([0-9.]*\) us.*/\1/p' "$out/engine.txt")
awk -v rs="$ratio_sub" -v ra="$ratio_all" -v ns="$n_sub" -v cg="$cg_ratio" -v cgs="$cg_ratio_sub" \
    -v lat="$eng_lat" \
    -v agr="$ag_reply_us" -v cli="$cli_reply_us" -v n="$n_all" -v copies="$copies" '
    { m[$1] = $2; q[$1] = $3 }
    END {
    printf "engine / bare parse throughput, the %d replies the engine parses: %.3f (all %d replies: %.3f", ns, rs, n, ra
    if (cg != "") printf "; callgrind instruction ratio: parsed %s, all %s", cgs, cg
    printf ")\n  target >= 0.8: %s\n", (rs >= 0.8 ? "MET" : "NOT MET")
    x = "x" copies; x1 = "x" copies "-j1"
    printf "per reply: engine in-process %.1f us (median reply) vs ast-grep %.2f ms, one process per reply: %.0fx\n", lat, agr / 1000, agr / lat
    printf "  ast-grep in one process over the corpus x%d: %.1f us/reply, %.2fx the engine (-j 1: %.1f us/reply, %.2fx)\n", copies, m[x] / n, q[x], m[x1] / n, q[x1]
    printf "  astgate CLI, one process per reply: %.2f ms\n", cli / 1000
    printf "  target faster than ast-grep per reply: %s\n", ((agr > lat && q[x] > 1) ? "MET" : "NOT MET")
}' "$out/dir-summary.txt"
