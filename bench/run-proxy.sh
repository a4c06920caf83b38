#!/usr/bin/env bash
# Benchmark of the proxy (`astgate serve`) against the upstream directly and nginx's proxy_pass.
#
# One run, everything on 127.0.0.1 and side by side:
#   - bench/proxy/upstream.js: a fake OpenAI upstream (Node, keep-alive) whose every reply is
#     generated for the request (a counter changes the agent's name, id and model) and holds one
#     Mastra agent with `model: openai('gpt-4o-<n>')` that rules/mastra.yaml rewrites; ~1.5 KB
#     non-streamed, or ~20 chat.completion.chunk events streamed;
#   - astgate serve --workers 2 and --workers 1 (rules/mastra.yaml, logs to a file);
#   - nginx (Debian's) as a plain reverse proxy, bench/proxy/nginx.conf.in: 2 workers,
#     keep-alive to the upstream, unprivileged, in the foreground, config in a temporary dir;
#   - astgate on a path it does not rewrite (plain passthrough), as a lower bound of its own cost.
# wrk (bench/proxy/post.lua) at concurrency 1 (latency) and 32 (requests/s), PROXY_REPS rounds of
# PROXY_DURATION seconds each, targets interleaved; medians. Time to first byte of a streamed
# reply whose prose comes PROXY_TTFB_DELAY_MS before its code (curl and bench/proxy/ttfb.js).
# The engine's time on the same replies: bench_rewrite (bench/bench_rewrite.c) on generated
# replies written to files. RSS from /proc/PID/status. Idle memory first, each proxy alone (before
# any other server of the bench starts, so no two of them share pages): Pss, private and resident
# memory from /proc/PID/smaps_rollup of astgate -w2 and of nginx's master + 2 workers.
# Then the HTTPS scenarios: bench/run-proxy-tls.sh with the same binaries (PROXY_TLS=0 skips it).
# bench/RESULTS.md ("Proxy") records runs.
#
# If perf is installed, astgate is profiled under load and its CPU time split by
# bench/proxy/perf-split.py.
# Knobs: PROXY_REPS (3), PROXY_DURATION (2, seconds per wrk run), PROXY_TTFB_N (50),
# PROXY_TTFB_DELAY_MS (20), PROXY_PERF (1; 0: no profile), PROXY_INSTR (1; 0: skip
# bench/proxy/instr.sh, the callgrind instruction counts, run when valgrind is installed),
# PROXY_ASTGATE (the binary to measure instead of build/astgate, e.g. a copy that others'
# rebuilds cannot touch), PROXY_ASTGATE_ALT (another astgate binary, e.g. the previous revision,
# run as two more targets: its API path and its passthrough path; instr.sh and
# run-proxy-tls.sh measure it too), PROXY_TLS (1; 0: skip bench/run-proxy-tls.sh), CC (cc),
# BENCH_LIBS. Needs node, curl, wrk and nginx
# (apt-get install -y wrk nginx-light when missing, as root), openssl for the HTTPS part. Takes
# about 7 minutes (11 with PROXY_ASTGATE_ALT).
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${PROXY_REPS:-3}
dur=${PROXY_DURATION:-2}
ttfb_n=${PROXY_TTFB_N:-50}
delay_ms=${PROXY_TTFB_DELAY_MS:-20}
alt=${PROXY_ASTGATE_ALT:-}
cc=${CC:-cc}
out=bench/out/proxy
rules=rules/mastra.yaml
api=/v1/chat/completions
marker='answers questions' # a word of the prose sentence the upstream streams first

for f in build/libastgate.a build/grammar/ts_parser.o build/astgate; do
    if [ ! -f "$f" ]; then
        echo "run-proxy: $f missing: run make first" >&2
        exit 1
    fi
done
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== apt-get install -y wrk nginx-light"
        apt-get install -y wrk nginx-light >/dev/null
    else
        echo "run-proxy: wrk and nginx are needed: apt-get install -y wrk nginx-light" >&2
        exit 1
    fi
fi
for t in node curl; do
    if ! command -v "$t" >/dev/null; then
        echo "run-proxy: $t is needed" >&2
        exit 1
    fi
done
nginx_bin=$(command -v nginx)

median() { # numbers on stdin, one a line
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
        else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
echo "kernel: $(uname -r); uptime (before): $(uptime)"
echo "wrk: $(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo '?');" \
    "$("$nginx_bin" -v 2>&1); node $(node --version); $(curl --version | head -1 | cut -d' ' -f1-2)"
echo

echo "== build"
rm -rf "$out"
mkdir -p "$out"
read -ra libs <<<"${BENCH_LIBS:--ltree-sitter -lyaml -lpcre2-8 -lm}"
cmd=("$cc" -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes
    -Wno-unused-parameter -Isrc -Isrc/base -Isrc/engine -Isrc/proxy -Isrc/api bench/bench_rewrite.c build/libastgate.a build/grammar/ts_parser.o
    build/grammar/ts_scanner.o build/grammar/tsx_parser.o build/grammar/tsx_scanner.o
    "${libs[@]}" -o "$out/bench_rewrite")
echo "${cmd[*]}"
"${cmd[@]}"
# a snapshot: make may relink build/astgate meanwhile
cp "${PROXY_ASTGATE:-build/astgate}" "$out/astgate"
# the memory floor of the required upstream client: a process that only initialises libcurl
"$cc" -O2 -DWITH_CURL bench/proxy/rss_floor.c -lcurl -o "$out/rss_floor_curl"
"$cc" -O2 bench/proxy/rss_floor.c -o "$out/rss_floor_libc"
read -r floor_curl _ _ < <("$out/rss_floor_curl")
read -r floor_libc _ _ < <("$out/rss_floor_libc")
echo

# ---- servers ----
tmp=$(mktemp -d /tmp/astgate-proxy-bench.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # file pattern: wait up to 5 s for a line matching pattern in file
    local i
    for ((i = 0; i < 100; i++)); do
        if grep -q "$2" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "run-proxy: timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2
    exit 1
}
rss_kb() { # pid field (VmRSS, VmHWM)
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
rss_detail() { # pid: where the resident memory is, in MiB
    local a f p
    a=$(rss_kb "$1" RssAnon) f=$(rss_kb "$1" RssFile)
    p=$(awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0)
    awk -v a="$a" -v f="$f" -v p="$p" 'BEGIN {
        printf "anonymous %.1f MiB + file-backed %.1f MiB (shared libraries, the binary); Pss %.1f MiB", a / 1024, f / 1024, p / 1024 }'
}
rss_top() { # pid: the largest resident file mappings
    awk '/^[0-9a-f]+-/ { name = $6 } /^Rss:/ { r[name] += $2 }
        END { for (n in r) if (n ~ /\//) print r[n], n }' "/proc/$1/smaps" | sort -rn | head -6 |
        awk '{ sub(/.*\//, "", $2); printf "%s%s %.1f", (NR > 1 ? ", " : ""), $2, $1 / 1024 } END { print "" }'
}
free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
        console.log(s.address().port); s.close(); })'
}

# ---- idle memory, each proxy alone ----
mem_of() { # pid...: "Pss Private Rss" in KiB, summed over the processes (smaps_rollup)
    local p files=()
    for p in "$@"; do files+=("/proc/$p/smaps_rollup"); done
    awk '$1 == "Rss:" { r += $2 } $1 == "Pss:" { s += $2 } $1 ~ /^Private_(Clean|Dirty):$/ { q += $2 }
        END { print s + 0, q + 0, r + 0 }' "${files[@]}"
}
ngx_conf() { # dir port upstream-port: nginx.conf.in for 2 workers in dir
    sed -e "s|@DIR@|$1|g" -e "s|@PORT@|$2|g" -e "s|@UPPORT@|$3|g" -e "s|@WORKERS@|2|g" \
        bench/proxy/nginx.conf.in >"$1/nginx.conf"
}
ngx_run() { # dir: the command line of nginx (unprivileged when this runs as root)
    local ncmd=("$nginx_bin" -p "$1" -e "$1/error.log" -c "$1/nginx.conf")
    if [ "$(id -u)" = 0 ]; then
        chmod 755 "$tmp"
        chown -R 65534:65534 "$1"
        ncmd=(setpriv --reuid=65534 --regid=65534 --clear-groups "${ncmd[@]}")
    fi
    echo "${ncmd[@]}"
}
echo "== idle memory: each proxy alone, 1 s after it listens (nothing else of the bench runs)"
: >"$out/mem.tsv"
for n in astgate ${alt:+alt}; do
    b=$out/astgate
    [ "$n" = alt ] && b=$alt
    "$b" serve --listen 127.0.0.1:0 --upstream http://127.0.0.1:9 --rules "$rules" --workers 2 \
        2>"$tmp/mem-$n.log" &
    mp=$!
    for ((i = 0; i < 100; i++)); do
        grep -q 'listening on' "$tmp/mem-$n.log" 2>/dev/null && break
        sleep 0.05
    done
    sleep 1
    echo "$n $(mem_of "$mp")" >>"$out/mem.tsv"
    kill -TERM "$mp"
    wait "$mp" 2>/dev/null || true
done
mkdir -p "$tmp/ngx-mem"
ngx_conf "$tmp/ngx-mem" "$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
    console.log(s.address().port); s.close(); })')" 9
read -ra mcmd <<<"$(ngx_run "$tmp/ngx-mem")"
"${mcmd[@]}" >"$tmp/ngx-mem/stdout" 2>&1 &
mp=$!
for ((i = 0; i < 100; i++)); do
    [ "$(pgrep -c -P "$mp" || true)" -ge 2 ] && break
    sleep 0.05
done
sleep 1
# shellcheck disable=SC2046
echo "nginx $(mem_of "$mp" $(pgrep -P "$mp"))" >>"$out/mem.tsv"
kill -TERM "$mp"
wait "$mp" 2>/dev/null || true
awk '{ printf "%-8s Pss %.1f MiB, private %.1f MiB, RSS %.1f MiB\n", $1, $2 / 1024, $3 / 1024, $4 / 1024 }' "$out/mem.tsv"
echo

node bench/proxy/upstream.js 0 >"$tmp/upstream.out" 2>&1 &
pids+=($!)
declare -A port log pid procs
pid[direct]=$!
wait_for "$tmp/upstream.out" '^listening'
up_port=$(awk '/^listening/ { print $2 }' "$tmp/upstream.out")
up_url=http://127.0.0.1:$up_port

start_astgate() { # name workers binary
    "$3" serve --listen 127.0.0.1:0 --upstream "$up_url" --rules "$rules" --workers "$2" \
        2>"$tmp/$1.log" &
    pid[$1]=$!
    procs[$1]=$!
    pids+=($!)
    log[$1]=$tmp/$1.log
    wait_for "$tmp/$1.log" 'listening on'
    port[$1]=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$1.log")
}
start_astgate astgate-w2 2 "$out/astgate"
idle_rss_w2=$(rss_kb "${pid[astgate-w2]}" VmRSS)
idle_detail_w2=$(rss_detail "${pid[astgate-w2]}")
idle_top_w2=$(rss_top "${pid[astgate-w2]}")
start_astgate astgate-w1 1 "$out/astgate"
idle_rss_w1=$(rss_kb "${pid[astgate-w1]}" VmRSS)
if [ -n "$alt" ]; then
    start_astgate alt 2 "$alt"
fi

# nginx: unprivileged (as nobody when this runs as root), foreground, prefix in $tmp/nginx
ngx=$tmp/nginx
mkdir -p "$ngx"
port[nginx]=$(free_port)
sed -e "s|@DIR@|$ngx|g" -e "s|@PORT@|${port[nginx]}|g" -e "s|@UPPORT@|$up_port|g" \
    -e "s|@WORKERS@|2|g" bench/proxy/nginx.conf.in >"$ngx/nginx.conf"
ngx_cmd=("$nginx_bin" -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf")
if [ "$(id -u)" = 0 ]; then
    chmod 755 "$tmp"
    chown -R 65534:65534 "$ngx"
    ngx_cmd=(setpriv --reuid=65534 --regid=65534 --clear-groups "${ngx_cmd[@]}")
fi
"${ngx_cmd[@]}" >"$ngx/stdout" 2>&1 &
pid[nginx]=$!
pids+=($!)
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:${port[nginx]}/stats" && break
    sleep 0.05
done
procs[nginx]="${pid[nginx]} $(pgrep -P "${pid[nginx]}" | tr '\n' ' ')"
procs[direct]=
idle_rss_ngx=$(ps -o rss= --ppid "${pid[nginx]}" -p "${pid[nginx]}" | awk '{ s += $1 } END { print s }')
port[direct]=$up_port

echo "== servers"
echo "upstream: node bench/proxy/upstream.js on $up_url"
for n in astgate-w2 astgate-w1 ${alt:+alt}; do
    w=2
    [ "$n" = astgate-w1 ] && w=1
    b=$out/astgate
    [ "$n" = alt ] && b=$alt
    echo "$n: $b serve --listen 127.0.0.1:${port[$n]} --upstream $up_url --rules $rules" \
        "--workers $w 2>LOG"
done
echo "nginx: ${ngx_cmd[*]} (bench/proxy/nginx.conf.in, port ${port[nginx]})"
echo

# ---- the replies are rewritten ----
echo "== check"
post() { # url [stream]: the reply body on stdout, headers in $tmp/h
    local b='{"model":"gpt-4o","messages":[{"role":"user","content":"Write a Mastra agent"}]'
    [ "${2:-}" = stream ] && b+=',"stream":true'
    curl -sS -N -D "$tmp/h" -X POST -H 'Content-Type: application/json' -d "$b}" "$1"
}
content_of() { # a reply body (JSON or SSE) on stdin: the message content, decoded
    node -e 'let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => {
        if (s.startsWith("data:")) {
            let c = "";
            for (const l of s.split("\n"))
                if (l.startsWith("data: {")) for (const ch of JSON.parse(l.slice(6)).choices)
                    c += ch.delta.content || "";
            process.stdout.write(c);
        } else process.stdout.write(JSON.parse(s).choices[0].message.content);
    })'
}
check_fail=0
orig_re="model: openai\('gpt-4o-[0-9]+'\)"
for n in direct astgate-w2 astgate-w1 ${alt:+alt} nginx; do
    for mode in json stream; do
        c=$(post "http://127.0.0.1:${port[$n]}$api" $mode | content_of)
        rw=$(awk 'tolower($1) == "x-astgate-rewrites:" { print $2 }' "$tmp/h" | tr -d '\r')
        if [[ $n == astgate* || $n == alt ]]; then
            want=rewritten
            ok=$([[ $c == *"model: openai('gpt-4.1-nano')"* && $c != *"gpt-4o-"* ]] && echo yes || echo no)
        else
            want=unchanged
            ok=$([[ $c =~ $orig_re ]] && echo yes || echo no)
        fi
        [ "$mode" = json ] && [ "$want" = rewritten ] && [ "$rw" != 1 ] && ok=no
        echo "$n $mode: $(grep -o "model: openai('[^']*')" <<<"$c") ($want: $ok)" \
            "${rw:+x-astgate-rewrites: $rw}"
        [ "$ok" = yes ] || check_fail=1
    done
done
c=$(post "http://127.0.0.1:${port[astgate-w2]}/bench/passthrough" | content_of)
echo "astgate-w2 passthrough path /bench/passthrough: $(grep -o "model: openai('[^']*')" <<<"$c")" \
    "(not an API route: unchanged)"
if [ "$check_fail" != 0 ]; then
    echo "run-proxy: a reply is not as expected" >&2
    exit 1
fi
echo

# ---- wrk ----
targets=(direct astgate-w2 astgate-w1 nginx pass)
[ -n "$alt" ] && targets+=(alt altpass)
port[pass]=${port[astgate-w2]}
procs[pass]=${procs[astgate-w2]}
log[pass]=${log[astgate-w2]}
if [ -n "$alt" ]; then
    port[altpass]=${port[alt]}
    procs[altpass]=${procs[alt]}
    log[altpass]=${log[alt]}
fi
url_of() { # target
    if [ "$1" = pass ] || [ "$1" = altpass ]; then
        echo "http://127.0.0.1:${port[$1]}/bench/passthrough"
    else
        echo "http://127.0.0.1:${port[$1]}$api"
    fi
}
: >"$out/wrk.tsv"
: >"$out/added.tsv"
ticks() { # pid...: CPU time (user + system) of the processes so far, in clock ticks
    local p s=0 st
    for p in "$@"; do
        read -ra st <"/proc/$p/stat"
        s=$((s + st[13] + st[14])) # the comm field of these processes has no spaces
    done
    echo "$s"
}
upstream_conns() {
    curl -s "$up_url/stats" | sed -n 's/.*"connections":\([0-9]*\).*/\1/p'
}
run_wrk() { # rep mode conc target
    local rep=$1 mode=$2 conc=$3 t=$4 threads=1 lines0=0 res tp0 tu0 cn0
    [ "$conc" -gt 1 ] && threads=2
    [ -n "${log[$t]:-}" ] && lines0=$(wc -l <"${log[$t]}")
    # shellcheck disable=SC2086 # procs[] holds several pids, split on purpose
    tp0=$(ticks ${procs[$t]}) tu0=$(ticks "${pid[direct]}") cn0=$(upstream_conns)
    res=$(BENCH_STREAM=$([ "$mode" = stream ] && echo 1 || echo 0) wrk -t"$threads" -c"$conc" \
        -d"${dur}s" --latency -s bench/proxy/post.lua "$(url_of "$t")" | awk '/^RESULT/')
    if [ -z "$res" ]; then
        echo "run-proxy: wrk gave no result for $t $mode c$conc" >&2
        exit 1
    fi
    # requests duration_us rps p50 p99 mean errors non2xx p90, CPU ticks of the proxy, of the
    # upstream, connections the upstream accepted
    # shellcheck disable=SC2086
    echo "$rep $mode $conc $t ${res#RESULT } $(($(ticks ${procs[$t]}) - tp0))" \
        "$(($(ticks "${pid[direct]}") - tu0)) $(($(upstream_conns) - cn0))" >>"$out/wrk.tsv"
    if [ -n "${log[$t]:-}" ]; then
        sleep 0.1 # the last replies' log lines
        tail -n +"$((lines0 + 1))" "${log[$t]}" | awk -v tag="$mode $conc $t" '
            /"type":"access"/ {
                match($0, /"added_ms":[0-9.]+/); a = substr($0, RSTART + 11, RLENGTH - 11)
                match($0, /"rewrites":[0-9]+/); r = substr($0, RSTART + 11, RLENGTH - 11)
                match($0, /"status":[0-9]+/); st = substr($0, RSTART + 9, RLENGTH - 9)
                print tag, a, r, st }
            /"action":"rewrite","applied":true/ { applied++ }
            END { print tag, "applied", applied + 0 > "/dev/stderr" }' \
            >>"$out/added.tsv" 2>>"$out/applied.tsv"
    fi
}
echo "== wrk: $reps rounds x ${dur}s per run; c1: wrk -t1 -c1 --latency, c32: wrk -t2 -c32 --latency"
echo "   wrk -tT -cC -d${dur}s --latency -s bench/proxy/post.lua URL   (BENCH_STREAM=1: streamed)"
# warm-up (Node's JIT, connection pools)
for t in "${targets[@]}"; do
    for mode in json stream; do
        BENCH_STREAM=$([ "$mode" = stream ] && echo 1 || echo 0) wrk -t2 -c32 -d1s \
            -s bench/proxy/post.lua "$(url_of "$t")" >/dev/null
    done
done
: >"$out/applied.tsv"
t_start=$SECONDS
for ((rep = 0; rep < reps; rep++)); do
    for conc in 1 32; do
        for mode in json stream; do
            # rotate the order of the targets from round to round
            n=${#targets[@]}
            for ((k = 0; k < n; k++)); do
                t=${targets[$(((k + rep) % n))]}
                run_wrk "$rep" "$mode" "$conc" "$t"
            done
        done
    done
    echo "   round $((rep + 1)) done ($((SECONDS - t_start)) s; load $(cut -d' ' -f1 /proc/loadavg))"
done
peak_rss_w2=$(rss_kb "${pid[astgate-w2]}" VmHWM)
load_detail_w2=$(rss_detail "${pid[astgate-w2]}")
now_rss_w2=$(rss_kb "${pid[astgate-w2]}" VmRSS)
peak_rss_w1=$(rss_kb "${pid[astgate-w1]}" VmHWM)
ngx_rss=$(ps -o rss= --ppid "${pid[nginx]}" -p "${pid[nginx]}" | awk '{ s += $1 } END { print s }')
# shellcheck disable=SC2086
read -r ngx_pss_after _ _ < <(mem_of ${procs[nginx]})
read -r ag_pss_after _ _ < <(mem_of "${pid[astgate-w2]}")
up_stats=$(curl -s "$up_url/stats")
echo "upstream: $up_stats"
echo

# ---- where astgate's time goes ----
if [ "${PROXY_PERF:-1}" != 0 ] && command -v perf >/dev/null && command -v python3 >/dev/null; then
    echo "== profile: astgate-w2 under wrk -t2 -c32 -d6s; CPU per request over 2 s from /proc/PID/stat,"
    echo "   then perf record -F 499 --call-graph dwarf -p PID -- sleep 2.5; bench/proxy/perf-split.py"
    ap=${pid[astgate-w2]}
    cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$ap/stat"; }
    n_access() { grep -c '"type":"access"' "${log[astgate-w2]}" || true; }
    hz=$(getconf CLK_TCK)
    for mode in json stream; do
        BENCH_STREAM=$([ "$mode" = stream ] && echo 1 || echo 0) wrk -t2 -c32 -d6s \
            -s bench/proxy/post.lua "$(url_of astgate-w2)" >"$out/perf.$mode.wrk" &
        wpid=$!
        sleep 1
        c0=$(cpu_ticks) l0=$(n_access)
        sleep 2
        c1=$(cpu_ticks) l1=$(n_access)
        perf record -F 499 --call-graph dwarf,32768 -p "$ap" -o "$out/perf.$mode.data" \
            -- sleep 2.5 >/dev/null 2>&1 || true
        wait "$wpid"
        us=$(awk -v c="$((c1 - c0))" -v n="$((l1 - l0))" -v hz="$hz" \
            'BEGIN { printf "%.1f", n ? c * 1e6 / hz / n : 0 }')
        echo "$mode: astgate CPU $us us per request ($((l1 - l0)) requests in 2 s," \
            "$((c1 - c0)) ticks of 1/$hz s)"
        perf script -i "$out/perf.$mode.data" -F comm,tid,ip,sym,dso 2>/dev/null |
            python3 bench/proxy/perf-split.py "$us" | tee "$out/perf.$mode.txt"
        echo "$mode $us" >>"$out/cpu.tsv"
    done
    echo
fi

# ---- time to first byte ----
echo "== time to first byte: streamed reply, prose first, code ${delay_ms} ms later; $ttfb_n requests each"
echo "   curl -s -o /dev/null -w '%{time_starttransfer}' -X POST ... 'URL?delay_ms=$delay_ms'"
echo "   node bench/proxy/ttfb.js $ttfb_n '$marker' URL...   (time to the prose)"
echo "   (the three targets in turn, request by request)"
: >"$out/ttfb.tsv"
: >"$out/ttfb-curl.txt"
ttfb_targets=(direct astgate-w2 nginx)
ttfb_url() { echo "http://127.0.0.1:${port[$1]}$api?delay_ms=$delay_ms"; }
for ((i = 0; i < ttfb_n; i++)); do
    for t in "${ttfb_targets[@]}"; do
        curl -s -o /dev/null -w "$t %{time_starttransfer}\n" -X POST \
            -H 'Content-Type: application/json' -d '{"model":"gpt-4o","stream":true}' \
            "$(ttfb_url "$t")" >>"$out/ttfb-curl.txt"
    done
done
for t in "${ttfb_targets[@]}"; do
    awk -v t="$t" '$1 == t { printf "%.1f\n", $2 * 1e6 }' "$out/ttfb-curl.txt" | median |
        sed "s/^/$t curl /" >>"$out/ttfb.tsv"
done
mapfile -t ttfb_urls < <(for t in "${ttfb_targets[@]}"; do ttfb_url "$t"; done)
node bench/proxy/ttfb.js "$ttfb_n" "$marker" "${ttfb_urls[@]}" >"$out/ttfb-node.txt"
for t in "${ttfb_targets[@]}"; do
    awk -v u="$(ttfb_url "$t")" -v t="$t" '$2 == u { print t, "node", $3, $4, $5 }' \
        "$out/ttfb-node.txt" >>"$out/ttfb.tsv"
done
echo

# ---- the engine on the same replies ----
echo "== the engine on the generated replies (bench_rewrite, 5 replies of the run)"
mkdir -p "$out/replies"
n0=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$up_stats")
for k in 1 2 3 4 5; do
    node bench/proxy/upstream.js --dump "$((n0 / 2 + k))" "$out/replies/reply-$k.md"
done
echo "   $out/bench_rewrite --reps 7 --iters 200 --rules $rules $out/replies/reply-*.md"
"$out/bench_rewrite" --reps 7 --iters 200 --rules "$rules" "$out"/replies/reply-*.md >"$out/engine.txt"
grep -E '^  (parse|match|splice|other|total) ' "$out/engine.txt"
read -r _ _ _ eng_us parse_us _ < <(grep '^result all ' "$out/engine.txt")
split=$(awk '/^  (parse|match|splice|other|total) / { printf "%s %.1f ", $1, $2 / 5 }' "$out/engine.txt")
echo "   per reply: engine $eng_us us, bare tree-sitter parse of the block $parse_us us"
echo

# ---- summary ----
echo "== results (medians over $reps rounds; added = through the proxy - direct, same round)"
awk -v reps="$reps" -v hz="$(getconf CLK_TCK)" -v eng="$eng_us" -v parse="$parse_us" -v esplit="$split" \
    -v idle_w2="$idle_rss_w2" -v idle_w1="$idle_rss_w1" -v peak_w2="$peak_rss_w2" \
    -v now_w2="$now_rss_w2" -v peak_w1="$peak_rss_w1" -v idle_ngx="$idle_rss_ngx" \
    -v floor_curl="$floor_curl" -v floor_libc="$floor_libc" \
    -v ngx_rss="$ngx_rss" -v delay="$delay_ms" -v alt="$alt" -v idle_detail="$idle_detail_w2" \
    -v idle_top="$idle_top_w2" -v load_detail="$load_detail_w2" -v ngx_pss_after="$ngx_pss_after" \
    -v ag_pss_after="$ag_pss_after" '
    function med(arr, k,   i, j, t) {
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
        return k % 2 ? arr[(k + 1) / 2] : (arr[k / 2] + arr[k / 2 + 1]) / 2
    }
    FILENAME ~ /wrk.tsv$/ {
        # rep mode conc target requests duration rps p50 p99 mean errors non2xx p90 proxy_ticks
        # upstream_ticks upstream_connections
        k = $2 SUBSEP $3 SUBSEP $4
        rps[k, $1] = $7; p50[k, $1] = $8; p99[k, $1] = $9; errs[k] += $11 + $12; p90[k, $1] = $13
        pc[k, $1] = $14 * 1e6 / hz / $5; uc[k, $1] = $15 * 1e6 / hz / $5
        cn[k, $1] = $16 * 1000 / $5
        next
    }
    FILENAME ~ /added.tsv$/ {
        # mode conc target added_ms rewrites status; 499: wrk closed the connection at the end of
        # its run with the request in flight (not a reply)
        if ($6 == 499) { gone++; next }
        k = $1 SUBSEP $2 SUBSEP $3
        na[k]++; av[k, na[k]] = $4 * 1000
        if ($5 >= 1) rw[k]++
        next
    }
    FILENAME ~ /applied.tsv$/ { ap[$1 SUBSEP $2 SUBSEP $3] += $5; next }
    FILENAME ~ /mem.tsv$/ { mpss[$1] = $2; mpriv[$1] = $3; mrss[$1] = $4; next }
    FILENAME ~ /ttfb.tsv$/ {
        if ($2 == "curl") tc[$1] = $3; else { th[$1] = $3; tp[$1] = $4; te[$1] = $5 }
        next
    }
    function m(a, k,   r, v) { for (r = 0; r < reps; r++) v[r + 1] = a[k, r]; return med(v, reps) }
    function added(a, k, kd,   r, v) { for (r = 0; r < reps; r++) v[r + 1] = a[k, r] - a[kd, r]; return med(v, reps) }
    function ratio(k, kn,   r, v) { for (r = 0; r < reps; r++) v[r + 1] = rps[k, r] / rps[kn, r]; return med(v, reps) }
    function asort_k(k,   i, j, t, g, n) { # sorts av[k, 1..na[k]] once (shell sort: many values)
        if (k in sorted) return
        sorted[k] = 1; n = na[k]
        for (g = int(n / 2); g > 0; g = int(g / 2)) for (i = g + 1; i <= n; i++) { t = av[k, i]; for (j = i; j > g && av[k, j - g] > t; j -= g) av[k, j] = av[k, j - g]; av[k, j] = t }
    }
    function apct(k, p,   n) { n = na[k]; if (!n) return -1; asort_k(k); return av[k, int((n - 1) * p / 100) + 1] }
    function amed(k,   n) { n = na[k]; if (!n) return -1; asort_k(k); return n % 2 ? av[k, (n + 1) / 2] : (av[k, n / 2] + av[k, n / 2 + 1]) / 2 }
    END {
        ntg = split("direct astgate-w2 astgate-w1 nginx pass" (alt != "" ? " alt altpass" : ""), tg, " ")
        label["direct"] = "upstream directly"; label["astgate-w2"] = "astgate --workers 2"
        label["astgate-w1"] = "astgate --workers 1"; label["nginx"] = "nginx proxy_pass, 2 workers"
        label["pass"] = "astgate -w2, passthrough"; label["alt"] = "PROXY_ASTGATE_ALT -w2"
        label["altpass"] = "PROXY_ASTGATE_ALT, passthrough"
        for (mi = 1; mi <= 2; mi++) {
            mode = mi == 1 ? "json" : "stream"
            printf "\n%s reply\n", (mode == "json" ? "non-streamed (~1.5 KB JSON)" : "streamed (~20 SSE events)")
            printf "  %-29s %7s %7s %9s %9s | %8s %7s %9s | %9s %11s\n", "", "c1 p50", "c1 p99", "added p50", "added p99", "c32 rps", "/ nginx", "CPU/req", "added_ms", "rewritten"
            for (i = 1; i <= ntg; i++) {
                t = tg[i]; k1 = mode SUBSEP 1 SUBSEP t; k32 = mode SUBSEP 32 SUBSEP t
                kd1 = mode SUBSEP 1 SUBSEP "direct"; kn32 = mode SUBSEP 32 SUBSEP "nginx"
                if (!((k1, 0) in p50)) continue
                ad50 = t == "direct" ? "" : sprintf("%d", added(p50, k1, kd1))
                ad99 = t == "direct" ? "" : sprintf("%d", added(p99, k1, kd1))
                kk = mode SUBSEP 1 SUBSEP t
                own = amed(kk) >= 0 ? sprintf("%.0f/%.0f", amed(kk), amed(mode SUBSEP 32 SUBSEP t)) : ""
                rwd = ""
                if (na[kk] > 0) rwd = sprintf("%d/%d", rw[kk] + rw[k32], na[kk] + na[k32])
                cpu = t == "direct" ? sprintf("-/%.0f", m(uc, k32)) : sprintf("%.0f/%.0f", m(pc, k32), m(uc, k32))
                printf "  %-29s %7d %7d %9s %9s | %8.0f %7.2f %9s | %9s %11s\n", label[t], m(p50, k1), m(p99, k1), ad50, ad99, m(rps, k32), ratio(k32, kn32), cpu, own, rwd
                if (errs[k1] + errs[k32] > 0) printf "  !! %s: %d wrk errors or non-2xx replies\n", t, errs[k1] + errs[k32]
                res[mode, t, "ad50"] = added(p50, k1, kd1); res[mode, t, "ad99"] = added(p99, k1, kd1)
                res[mode, t, "ratio"] = ratio(k32, kn32); res[mode, t, "ad90"] = added(p90, k1, kd1)
                res[mode, t, "own50"] = amed(kk); res[mode, t, "own99"] = apct(kk, 99)
            }
        }
        printf "added p90 at c1 (us; less exposed to scheduling noise than p99), json / stream:"
        for (i = 2; i <= ntg; i++) printf "%s %s %d / %d", (i > 2 ? ";" : ""), tg[i], res["json", tg[i], "ad90"], res["stream", tg[i], "ad90"]
        printf "\n"
        printf "new upstream connections per 1000 requests at c32 (json, stream):"
        for (i = 1; i <= ntg; i++) printf "%s %s %.0f, %.0f", (i > 1 ? ";" : ""), tg[i], m(cn, "json" SUBSEP 32 SUBSEP tg[i]), m(cn, "stream" SUBSEP 32 SUBSEP tg[i])
        printf "\n"
        printf "  (latencies in us; CPU/req: CPU time of the proxy / of the upstream per request at c32, us;\n"
        printf "   added_ms: median of astgate access-log added_ms at c1/c32, us;\n"
        printf "   rewritten: access lines with rewrites >= 1 / all access lines, c1 + c32)\n"
        for (k in ap) { split(k, kp, SUBSEP); if (kp[3] != "pass" && kp[3] != "altpass") apt += ap[k] }
        for (k in na) { split(k, kp, SUBSEP); if (kp[3] != "pass" && kp[3] != "altpass") { nat += na[k]; rwt += rw[k] } }
        printf "rewrite log: %d applied rewrites for %d proxied replies (%d with x-astgate rewrites >= 1; %d access lines of status 499 left out: requests in flight when wrk stopped)\n", apt, nat, rwt, gone

        printf "\nastgate own time per request (access log added_ms, c1): non-streamed median %.0f us, p99 %.0f us; streamed median %.0f us, p99 %.0f us\n", res["json", "astgate-w2", "own50"], res["json", "astgate-w2", "own99"], res["stream", "astgate-w2", "own50"], res["stream", "astgate-w2", "own99"]
        ns = split(esplit, sp, " ")
        printf "engine on the same reply (bench_rewrite, per reply): %.1f us = ", eng
        for (i = 1; i < ns; i += 2) if (sp[i] != "total") printf "%s %.1f  ", sp[i], sp[i + 1]
        printf "\n  bare tree-sitter parse of the reply code: %.1f us\n", parse
        printf "\nRSS: astgate -w2 idle after start %.1f MiB, peak (VmHWM) after the c32 runs %.1f MiB (now %.1f MiB); -w1 idle %.1f MiB, peak %.1f MiB\n", idle_w2 / 1024, peak_w2 / 1024, now_w2 / 1024, idle_w1 / 1024, peak_w1 / 1024
        printf "     idle: %s\n     largest idle file mappings (MiB): %s\n", idle_detail, idle_top
        printf "     after the runs: %s\n", load_detail
        printf "     nginx (master + 2 workers) idle %.1f MiB, after the runs %.1f MiB\n", idle_ngx / 1024, ngx_rss / 1024
        printf "     floor (bench/proxy/rss_floor.c): a process that only initialises libcurl %.1f MiB; libc only %.1f MiB\n", floor_curl / 1024, floor_libc / 1024
        printf "Pss, each proxy alone 1 s after start (smaps_rollup; nginx: master + 2 workers): astgate -w2 %.1f MiB (private %.1f, RSS %.1f); nginx %.1f MiB (private %.1f, RSS %.1f)", mpss["astgate"] / 1024, mpriv["astgate"] / 1024, mrss["astgate"] / 1024, mpss["nginx"] / 1024, mpriv["nginx"] / 1024, mrss["nginx"] / 1024
        if ("alt" in mpss) printf "; PROXY_ASTGATE_ALT %.1f MiB (private %.1f, RSS %.1f)", mpss["alt"] / 1024, mpriv["alt"] / 1024, mrss["alt"] / 1024
        printf "\n     after the runs, everything running: astgate -w2 Pss %.1f MiB, nginx %.1f MiB\n", ag_pss_after / 1024, ngx_pss_after / 1024

        printf "\nTTFB, streamed reply, code %d ms after the prose (medians, us):\n", delay
        printf "  %-29s %12s %12s %12s %12s\n", "", "curl start", "node head", "node prose", "node end"
        split("direct astgate-w2 nginx", tt, " ")
        for (i = 1; i <= 3; i++) printf "  %-29s %12.0f %12.0f %12.0f %12.0f\n", label[tt[i]], tc[tt[i]], th[tt[i]], tp[tt[i]], te[tt[i]]
        ag_ttfb = tc["astgate-w2"] - tc["direct"]; ag_prose = tp["astgate-w2"] - tp["direct"]
        printf "  added by astgate: curl %.0f us, prose %.0f us; nginx: curl %.0f us, prose %.0f us\n", ag_ttfb, ag_prose, tc["nginx"] - tc["direct"], tp["nginx"] - tp["direct"]

        printf "\n== targets (astgate --workers 2)\n"
        for (mi = 1; mi <= 2; mi++) {
            mode = mi == 1 ? "json" : "stream"
            lim = res[mode, "nginx", "ad50"] + parse
            printf "%-13s added p50 %d us <= nginx added p50 %d + parse %.0f = %.0f us: %s\n", (mode == "json" ? "non-streamed" : "streamed"), res[mode, "astgate-w2", "ad50"], res[mode, "nginx", "ad50"], parse, lim, (res[mode, "astgate-w2", "ad50"] <= lim ? "MET" : "NOT MET")
            # the tails of the direct runs carry the scheduling noise of the machine (ms) and can make
            # the p99 difference small or negative; without noise the added p99 is at least the
            # added p90 and p50, so the target needs all three under 300 us
            ad99 = res[mode, "astgate-w2", "ad99"]; ad90 = res[mode, "astgate-w2", "ad90"]
            ad50 = res[mode, "astgate-w2", "ad50"]
            printf "%-13s added p99 %d us (p90 %d, p50 %d: lower bounds of a noise-free p99) < 300 us: %s\n", "", ad99, ad90, ad50, ((ad99 < 300 && ad90 < 300 && ad50 < 300) ? "MET" : "NOT MET")
            printf "%-13s rps at c32 %.2f x nginx >= 0.5: %s\n", "", res[mode, "astgate-w2", "ratio"], (res[mode, "astgate-w2", "ratio"] >= 0.5 ? "MET" : "NOT MET")
        }
        printf "idle RSS %.1f MiB < 8 MiB: %s (a process that only initialises libcurl: %.1f MiB)\n", idle_w2 / 1024, (idle_w2 < 8192 ? "MET" : "NOT MET"), floor_curl / 1024
        printf "added TTFB of the prose %.0f us (curl start %.0f us) < 1 ms: %s\n", ag_prose, ag_ttfb, ((ag_prose < 1000 && ag_ttfb < 1000) ? "MET" : "NOT MET")

        printf "\n== targets of issue 11 (astgate --workers 2, non-streamed; ratios: medians of the per-round ratios)\n"
        for (r = 0; r < reps; r++) { kd = "json" SUBSEP 1 SUBSEP "direct"; a = p50["json" SUBSEP 1 SUBSEP "pass", r] - p50[kd, r]; b = p50["json" SUBSEP 1 SUBSEP "nginx", r] - p50[kd, r]; pr[r + 1] = b > 0 ? a / b : 99 }
        pass_ad = med(pr, reps)
        printf "passthrough   added p50 at c1 %d us = %.2f x nginx %d us <= 1.25 x: %s\n", res["json", "pass", "ad50"], pass_ad, res["json", "nginx", "ad50"], (pass_ad <= 1.25 ? "MET" : "NOT MET")
        printf "passthrough   rps at c32 %.2f x nginx >= 0.8: %s\n", res["json", "pass", "ratio"], (res["json", "pass", "ratio"] >= 0.8 ? "MET" : "NOT MET")
        printf "one rewrite   rps at c32 %.2f x nginx >= 0.6: %s\n", res["json", "astgate-w2", "ratio"], (res["json", "astgate-w2", "ratio"] >= 0.6 ? "MET" : "NOT MET")
        printf "idle Pss      %.1f MiB <= nginx %.1f MiB: %s\n", mpss["astgate"] / 1024, mpss["nginx"] / 1024, (mpss["astgate"] <= mpss["nginx"] ? "MET" : "NOT MET")
        if (alt != "") {
            for (r = 0; r < reps; r++) { kd = "json" SUBSEP 1 SUBSEP "direct"; a = p50["json" SUBSEP 1 SUBSEP "altpass", r] - p50[kd, r]; b = p50["json" SUBSEP 1 SUBSEP "nginx", r] - p50[kd, r]; pr[r + 1] = b > 0 ? a / b : 99 }
            printf "PROXY_ASTGATE_ALT, the same: passthrough added p50 %.2f x nginx, c32 %.2f x; rewrite c32 %.2f x; idle Pss %.1f MiB\n", med(pr, reps), res["json", "altpass", "ratio"], res["json", "alt", "ratio"], mpss["alt"] / 1024
        }
    }' "$out/wrk.tsv" "$out/added.tsv" "$out/applied.tsv" "$out/mem.tsv" "$out/ttfb.tsv" | tee "$out/summary.txt"

# ---- instructions per request (deterministic; bench/proxy/instr.sh) ----
if [ "${PROXY_INSTR:-1}" != 0 ] && command -v valgrind >/dev/null; then
    echo
    echo "== user-space instructions per request (bench/proxy/instr.sh, callgrind; kernel not counted)"
    bench/proxy/instr.sh "$out/astgate"
    if [ -n "$alt" ]; then
        echo "PROXY_ASTGATE_ALT: INSTR_NGINX=0 INSTR_TLS=0 bench/proxy/instr.sh $alt"
        INSTR_NGINX=0 INSTR_TLS=0 bench/proxy/instr.sh "$alt"
    fi
fi

# ---- HTTPS upstream (bench/run-proxy-tls.sh) ----
if [ "${PROXY_TLS:-1}" != 0 ]; then
    echo
    echo "== HTTPS upstream: bench/run-proxy-tls.sh $out/astgate${alt:+ $alt}"
    bench/run-proxy-tls.sh "$out/astgate" "$alt"
fi
echo
echo "uptime (after): $(uptime)"
