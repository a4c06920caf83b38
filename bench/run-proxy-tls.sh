#!/usr/bin/env bash
# Benchmark of the proxy (`astgate serve`) against nginx's proxy_pass with an HTTPS upstream.
#
#   bench/run-proxy-tls.sh [ASTGATE [ALT]]
#
# ASTGATE: the binary to measure (default: a copy of build/astgate); ALT (default
# $PROXY_ASTGATE_ALT): another one, e.g. the previous revision, measured alike. bench/run-proxy.sh
# runs this script at its end (PROXY_TLS=0 skips it). Everything on 127.0.0.1, in one run:
#   - bench/proxy/upstream.js, the fake OpenAI upstream (plain HTTP, keep-alive);
#   - nginx terminating TLS in front of it (bench/proxy/nginx-tls-upstream.conf.in), the HTTPS
#     upstream, with a certificate of a throwaway CA (bench/proxy/pki.sh, in bench/out/proxy-tls/pki)
#     on two ports: keep-alive, and keepalive_timeout 0 (a new connection per request);
#   - astgate serve --workers 2 with `tls: {ca_file: BUNDLE}` in a config file (BUNDLE: the system
#     CA bundle plus the throwaway CA). A binary without the `tls` key (refused by `serve --check`)
#     gets SSL_CERT_FILE=BUNDLE and, as root, runs in a mount namespace where BUNDLE is bind-mounted
#     over /etc/ssl/certs/ca-certificates.crt (libcurl's built-in CA file, which it reads instead
#     of SSL_CERT_FILE);
#   - nginx proxy_pass https:// (bench/proxy/nginx-tls.conf.in): 2 workers, keep-alive,
#     proxy_ssl_verify on with the same bundle, proxy_ssl_session_reuse on.
# Scenarios (non-streamed replies, rules/mastra.yaml; "rewrite": /v1/chat/completions, one
# rewrite per reply; "passthrough": /bench/passthrough, no rule applies):
#   1. keep-alive HTTPS upstream: wrk -t1 -c1 and -t2 -c32 (bench/proxy/post.lua), PROXY_REPS rounds
#      of PROXY_DURATION s, targets rotated; requests/s, latency, CPU per request (utime + stime of
#      all the proxy's processes, /proc/PID/stat), new upstream connections;
#   2. an upstream that closes every connection: PROXY_TLS_CLOSE_N requests (2000; ALT a tenth) at
#      concurrency PROXY_TLS_CLOSE_C (32) with bench/proxy/burst.js (client side keep-alive), per
#      round; CPU per request of the proxy, how many of its TLS connections resumed a session
#      ($ssl_session_reused in the TLS upstream's log) and with which TLS version; nginx also
#      with proxy_ssl_protocols TLSv1.3 (its default offers up to TLSv1.2);
#   3. cold burst: a freshly started proxy (nothing cached, no upstream connection) gets 32
#      concurrent requests, each on its own client connection (burst.js URL 32 32),
#      PROXY_TLS_BURSTS times (5); latency percentiles of the 32.
# Results in bench/out/proxy-tls (tls-*.tsv, summary.txt); bench/RESULTS.md records runs.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=${PROXY_REPS:-3}
dur=${PROXY_DURATION:-2}
close_n=${PROXY_TLS_CLOSE_N:-2000}
close_c=${PROXY_TLS_CLOSE_C:-32}
bursts=${PROXY_TLS_BURSTS:-5}
out=bench/out/proxy-tls
rules=rules/mastra.yaml
api=/v1/chat/completions
pass=/bench/passthrough
hz=$(getconf CLK_TCK)

for t in node curl wrk nginx openssl; do
    if ! command -v "$t" >/dev/null; then
        echo "run-proxy-tls: $t is needed (apt-get install -y wrk nginx-light openssl)" >&2
        exit 1
    fi
done
rm -rf "$out"
mkdir -p "$out"
bin=${1:-}
if [ -z "$bin" ]; then
    [ -x build/astgate ] || {
        echo "run-proxy-tls: build/astgate missing: run make first" >&2
        exit 1
    }
    cp build/astgate "$out/astgate"
    bin=$out/astgate
fi
alt=${2:-${PROXY_ASTGATE_ALT:-}}
bench/proxy/pki.sh "$out/pki"
bundle=$(realpath "$out/pki/bundle.pem")

tmp=$(mktemp -d /tmp/astgate-proxy-tls.XXXXXX)
chmod 755 "$tmp"
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
mkdir -p "$tmp/pki"
cp "$out"/pki/{server.pem,server.key,bundle.pem} "$tmp/pki/"
chmod 644 "$tmp"/pki/*

free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
        console.log(s.address().port); s.close(); })'
}
wait_for() { # file pattern
    local i
    for ((i = 0; i < 200; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "run-proxy-tls: timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2
    exit 1
}
wait_port() { # port: until it accepts a TCP connection (no request is sent)
    local i
    for ((i = 0; i < 200; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "run-proxy-tls: nothing listens on $1" >&2
    exit 1
}
ticks() { # pid...: utime + stime so far, clock ticks
    local p s=0 st
    for p in "$@"; do
        read -ra st <"/proc/$p/stat"
        s=$((s + st[13] + st[14]))
    done
    echo "$s"
}
declare -A pid procs port

node bench/proxy/upstream.js 0 >"$tmp/upstream.out" 2>&1 &
pids+=($!)
pid[node]=$!
wait_for "$tmp/upstream.out" '^listening'
up_port=$(awk '/^listening/ { print $2 }' "$tmp/upstream.out")

start_nginx() { # name template workers sed-expressions...: nginx (as nobody when root) in $tmp/name
    local name=$1 tpl=$2 workers=$3 d=$tmp/$1 i
    shift 3
    rm -rf "$d"
    mkdir -p "$d"
    sed -e "s|@DIR@|$d|g" "$@" "$tpl" >"$d/nginx.conf"
    local cmd=(nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf")
    if [ "$(id -u)" = 0 ]; then
        chown -R 65534:65534 "$d"
        cmd=(setpriv --reuid=65534 --regid=65534 --clear-groups "${cmd[@]}")
    fi
    "${cmd[@]}" >"$d/stdout" 2>&1 &
    pid[$name]=$!
    pids+=($!)
    for ((i = 0; i < 200; i++)); do
        [ "$(pgrep -c -P "${pid[$name]}" || true)" -ge "$workers" ] && break
        sleep 0.05
    done
    procs[$name]="${pid[$name]} $(pgrep -P "${pid[$name]}" | tr '\n' ' ')"
}
stop() { # name
    kill -TERM "${pid[$1]}" 2>/dev/null || true
    wait "${pid[$1]}" 2>/dev/null || true
}

# the HTTPS upstream
port[upka]=$(free_port)
port[upclose]=$(free_port)
start_nginx term bench/proxy/nginx-tls-upstream.conf.in 2 -e "s|@UPPORT@|$up_port|g" \
    -e "s|@KAPORT@|${port[upka]}|g" -e "s|@CLOSEPORT@|${port[upclose]}|g" \
    -e "s|@CERT@|$tmp/pki/server.pem|g" -e "s|@KEY@|$tmp/pki/server.key|g"
wait_port "${port[upka]}"
wait_port "${port[upclose]}"
curl -sS --cacert "$out/pki/ca.pem" -o /dev/null "https://127.0.0.1:${port[upka]}/stats"
termlog=$tmp/term/access.log
upka=https://127.0.0.1:${port[upka]}
upclose=https://127.0.0.1:${port[upclose]}

# how each binary gets the CA bundle
cfg=$tmp/astgate-tls.yaml
printf 'tls:\n  ca_file: %s\n' "$bundle" >"$cfg"
declare -A camode
for b in "$bin" ${alt:+"$alt"}; do
    if "$b" serve --config "$cfg" --rules "$rules" --check >"$tmp/check.out" 2>&1; then
        camode[$b]=config
    elif [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
        camode[$b]=bind
    else
        camode[$b]='env'
    fi
done
ca_how() { # binary
    case ${camode[$1]} in
    config) echo "--config CFG (tls: {ca_file: $bundle})" ;;
    bind) echo "no tls key in this build (serve --check refuses it): SSL_CERT_FILE=BUNDLE and BUNDLE" \
        "bind-mounted over /etc/ssl/certs/ca-certificates.crt (unshare -m)" ;;
    env) echo "no tls key in this build: SSL_CERT_FILE=BUNDLE only (libcurl may ignore it)" ;;
    esac
}
start_ag() { # name binary upstream-url: astgate serve --workers 2
    local name=$1 b=$2 url=$3
    local cmd=("$b" serve --listen 127.0.0.1:0 --upstream "$url" --rules "$rules" --workers 2)
    case ${camode[$b]} in
    config) cmd+=(--config "$cfg") ;;
    bind)
        # shellcheck disable=SC2016 # expanded by the inner sh
        cmd=(env SSL_CERT_FILE="$bundle" unshare -m sh -c \
            'b=$1; shift; mount --bind "$b" /etc/ssl/certs/ca-certificates.crt && exec "$@"' sh \
            "$bundle" "${cmd[@]}")
        ;;
    env) cmd=(env SSL_CERT_FILE="$bundle" "${cmd[@]}") ;;
    esac
    "${cmd[@]}" 2>"$tmp/$name.log" &
    pid[$name]=$!
    procs[$name]=$!
    pids+=($!)
    wait_for "$tmp/$name.log" 'listening on'
    port[$name]=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.log")
}

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
echo "uptime (before): $(uptime)"
echo "$(nginx -v 2>&1); $(openssl version); $(curl --version | head -1 | cut -d' ' -f1-3)"
echo
echo "== servers"
echo "upstream: node bench/proxy/upstream.js on 127.0.0.1:$up_port; TLS in front of it: nginx" \
    "(bench/proxy/nginx-tls-upstream.conf.in) on $upka (keep-alive) and $upclose (keepalive_timeout 0)"
echo "certificate: bench/proxy/pki.sh $out/pki (ECDSA P-256, localhost + 127.0.0.1);" \
    "trusted: BUNDLE=$bundle ($(grep -c 'BEGIN CERT' "$bundle") certificates)"
start_ag ag-ka "$bin" "$upka"
start_ag ag-close "$bin" "$upclose"
echo "astgate: $bin serve --listen 127.0.0.1:0 --upstream URL --rules $rules --workers 2; CA: $(ca_how "$bin")"
if [ -n "$alt" ]; then
    start_ag alt-ka "$alt" "$upka"
    start_ag alt-close "$alt" "$upclose"
    echo "ALT: $alt, the same; CA: $(ca_how "$alt")"
fi
port[nginx]=$(free_port)
port[nginx-close]=$(free_port)
port[nginx13-close]=$(free_port)
ngx_seds=(-e "s|@UPKA@|${port[upka]}|g" -e "s|@UPCLOSE@|${port[upclose]}|g"
    -e "s|@CA@|$tmp/pki/bundle.pem|g" -e "s|@WORKERS@|2|g")
start_nginx nginx bench/proxy/nginx-tls.conf.in 2 "${ngx_seds[@]}" -e "s|@PORT@|${port[nginx]}|g" \
    -e "s|@CLOSEPORT@|${port[nginx-close]}|g" -e "s|@CLOSE13PORT@|${port[nginx13-close]}|g"
wait_port "${port[nginx]}"
echo "nginx: nginx -p DIR -c DIR/nginx.conf (bench/proxy/nginx-tls.conf.in, 2 workers," \
    "proxy_pass https://, proxy_ssl_verify on, proxy_ssl_trusted_certificate BUNDLE)"
echo

# ---- every target answers, rewritten where it should be ----
echo "== check"
check() { # name url want(rewritten|unchanged)
    local body c ok
    body=$(curl -sS --cacert "$bundle" -X POST -H 'Content-Type: application/json' \
        -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Write a Mastra agent"}]}' "$2")
    c=$(grep -o "model: openai('[^']*')" <<<"$body" | head -1 || true)
    if [ "$3" = rewritten ]; then
        [[ $c == *gpt-4.1-nano* ]] && ok=yes || ok=no
    else
        [[ $c == *gpt-4o-* ]] && ok=yes || ok=no
    fi
    echo "$1: ${c:-(no agent: $(head -c 200 <<<"$body"))} ($3: $ok)"
    if [ "$ok" != yes ]; then
        echo "run-proxy-tls: $1 is not as expected; its log:" >&2
        cat "$tmp/${1%%/*}.log" "$tmp/nginx/error.log" >&2 2>/dev/null || true
        exit 1
    fi
}
check direct "$upka$api" unchanged
for n in ag-ka ag-close ${alt:+alt-ka alt-close}; do
    check "$n" "http://127.0.0.1:${port[$n]}$api" rewritten
    check "$n/passthrough" "http://127.0.0.1:${port[$n]}$pass" unchanged
done
check nginx "http://127.0.0.1:${port[nginx]}$api" unchanged
check nginx-close "http://127.0.0.1:${port[nginx-close]}$api" unchanged
check nginx13-close "http://127.0.0.1:${port[nginx13-close]}$api" unchanged
echo

# the TLS upstream's log since line $1, port $2: "new-connections resumed-connections requests
# TLSv1.3-connections"
termlog_since() {
    tail -n +"$(($1 + 1))" "$termlog" | awk -v p="$2" '$1 == p { n++; if ($4 == 1) { c++; if ($2 == "r") r++; if ($3 == "TLSv1.3") t++ } }
        END { print c + 0, r + 0, n + 0, t + 0 }'
}
termlines() { wc -l <"$termlog"; }

# ---- 1. keep-alive HTTPS upstream ----
ka_targets=(direct nginx ag-rw ag-pass)
[ -n "$alt" ] && ka_targets+=(alt-rw alt-pass)
ka_url() {
    case $1 in
    direct) echo "$upka$api" ;;
    nginx) echo "http://127.0.0.1:${port[nginx]}$api" ;;
    *-rw) echo "http://127.0.0.1:${port[${1%-rw}-ka]}$api" ;;
    *-pass) echo "http://127.0.0.1:${port[${1%-pass}-ka]}$pass" ;;
    esac
}
ka_procs() {
    case $1 in
    direct) echo "" ;;
    nginx) echo "${procs[nginx]}" ;;
    *-rw) echo "${procs[${1%-rw}-ka]}" ;;
    *-pass) echo "${procs[${1%-pass}-ka]}" ;;
    esac
}
: >"$out/tls-ka.tsv"
echo "== 1. keep-alive HTTPS upstream: $reps rounds x ${dur}s; wrk -t1 -c1 / -t2 -c32 --latency -s bench/proxy/post.lua URL"
for t in "${ka_targets[@]}"; do # warm-up: connection pools, TLS sessions, Node's JIT
    BENCH_STREAM=0 wrk -t2 -c32 -d1s -s bench/proxy/post.lua "$(ka_url "$t")" >/dev/null
done
t_start=$SECONDS
for ((rep = 0; rep < reps; rep++)); do
    for conc in 1 32; do
        n=${#ka_targets[@]}
        for ((k = 0; k < n; k++)); do
            t=${ka_targets[$(((k + rep) % n))]}
            threads=$([ "$conc" = 1 ] && echo 1 || echo 2)
            # shellcheck disable=SC2046,SC2086 # several pids on purpose
            tp0=$(ticks $(ka_procs "$t")) tt0=$(ticks ${procs[term]}) tn0=$(ticks "${pid[node]}")
            l0=$(termlines)
            res=$(BENCH_STREAM=0 wrk -t"$threads" -c"$conc" -d"${dur}s" --latency \
                -s bench/proxy/post.lua "$(ka_url "$t")" | awk '/^RESULT/')
            [ -n "$res" ] || {
                echo "run-proxy-tls: wrk gave no result for $t c$conc" >&2
                exit 1
            }
            # shellcheck disable=SC2046,SC2086
            echo "$rep $conc $t ${res#RESULT } $(($(ticks $(ka_procs "$t")) - tp0))" \
                "$(($(ticks ${procs[term]}) - tt0)) $(($(ticks "${pid[node]}") - tn0))" \
                "$(termlog_since "$l0" "${port[upka]}")" >>"$out/tls-ka.tsv"
        done
    done
    echo "   round $((rep + 1)) done ($((SECONDS - t_start)) s; load $(cut -d' ' -f1 /proc/loadavg))"
done

# ---- 2. an upstream that closes every connection ----
close_targets=(nginx nginx13 ag-pass ag-rw)
[ -n "$alt" ] && close_targets+=(alt-pass alt-rw)
close_url() {
    case $1 in
    nginx) echo "http://127.0.0.1:${port[nginx-close]}$api" ;;
    nginx13) echo "http://127.0.0.1:${port[nginx13-close]}$api" ;;
    *-rw) echo "http://127.0.0.1:${port[${1%-rw}-close]}$api" ;;
    *-pass) echo "http://127.0.0.1:${port[${1%-pass}-close]}$pass" ;;
    esac
}
close_procs() {
    case $1 in
    nginx | nginx13) echo "${procs[nginx]}" ;;
    *-rw) echo "${procs[${1%-rw}-close]}" ;;
    *-pass) echo "${procs[${1%-pass}-close]}" ;;
    esac
}
close_n_of() { # target: ALT gets a tenth (the binary before the CA cache spent ~30 ms a request)
    if [[ $1 == alt-* ]]; then echo $((close_n / 10 > 64 ? close_n / 10 : 64)); else echo "$close_n"; fi
}
: >"$out/tls-close.tsv"
echo "== 2. upstream closes every connection: node bench/proxy/burst.js URL $close_n $close_c 1" \
    "per target and round (ALT: $(close_n_of alt-x) requests); CPU from /proc/PID/stat"
for t in "${close_targets[@]}"; do # warm-up: sessions to resume
    node bench/proxy/burst.js "$(close_url "$t")" "$(($(close_n_of "$t") / 10))" "$close_c" 1 >/dev/null
done
t_start=$SECONDS
for ((rep = 0; rep < reps; rep++)); do
    n=${#close_targets[@]}
    for ((k = 0; k < n; k++)); do
        t=${close_targets[$(((k + rep) % n))]}
        # shellcheck disable=SC2046,SC2086
        tp0=$(ticks $(close_procs "$t")) tt0=$(ticks ${procs[term]}) tn0=$(ticks "${pid[node]}")
        l0=$(termlines)
        res=$(node bench/proxy/burst.js "$(close_url "$t")" "$(close_n_of "$t")" "$close_c" 1)
        # shellcheck disable=SC2046,SC2086
        echo "$rep $t ${res#RESULT } $(($(ticks $(close_procs "$t")) - tp0))" \
            "$(($(ticks ${procs[term]}) - tt0)) $(($(ticks "${pid[node]}") - tn0))" \
            "$(termlog_since "$l0" "${port[upclose]}")" >>"$out/tls-close.tsv"
    done
    echo "   round $((rep + 1)) done ($((SECONDS - t_start)) s; load $(cut -d' ' -f1 /proc/loadavg))"
done

# ---- 3. cold burst ----
echo "== 3. cold burst: a fresh proxy (keep-alive HTTPS upstream), then node bench/proxy/burst.js URL 32 32" \
    "(32 concurrent requests, each on its own connection), $bursts times"
stop ag-close
[ -n "$alt" ] && stop alt-close
: >"$out/tls-burst.tsv"
burst_targets=(nginx ag)
[ -n "$alt" ] && burst_targets+=(alt)
for ((rep = 0; rep < bursts; rep++)); do
    n=${#burst_targets[@]}
    for ((k = 0; k < n; k++)); do
        t=${burst_targets[$(((k + rep) % n))]}
        if [ "$t" = nginx ]; then
            p=$(free_port)
            start_nginx fresh-nginx bench/proxy/nginx-tls.conf.in 2 "${ngx_seds[@]}" \
                -e "s|@PORT@|$p|g" -e "s|@CLOSEPORT@|$(free_port)|g" -e "s|@CLOSE13PORT@|$(free_port)|g"
            wait_port "$p"
            name=fresh-nginx
        else
            b=$bin
            [ "$t" = alt ] && b=$alt
            start_ag "fresh-$t" "$b" "$upka"
            p=${port[fresh-$t]}
            name=fresh-$t
        fi
        l0=$(termlines)
        res=$(node bench/proxy/burst.js "http://127.0.0.1:$p$api" 32 32 0)
        echo "$rep $t ${res#RESULT } $(termlog_since "$l0" "${port[upka]}")" >>"$out/tls-burst.tsv"
        stop "$name"
    done
done
echo "uptime (after): $(uptime)"
echo

# ---- summary ----
echo "== results (medians over $reps rounds, $bursts bursts)"
awk -v hz="$hz" -v alt="$alt" -v close_n="$close_n" -v close_c="$close_c" '
    function med(arr, k,   i, j, t) {
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
        return k % 2 ? arr[(k + 1) / 2] : (arr[k / 2] + arr[k / 2 + 1]) / 2
    }
    function m(a, k,   r, v, n) { n = 0; for (r = 0; r < R[FILEK]; r++) if ((k, r) in a) v[++n] = a[k, r]; return n ? med(v, n) : -1 }
    FILENAME ~ /tls-ka.tsv$/ {
        # rep conc target requests dur rps p50 p99 mean errs non2xx p90 pticks tticks nticks newc resumed reqs
        FILEK = "ka"; if ($1 + 1 > R["ka"]) R["ka"] = $1 + 1
        k = $2 SUBSEP $3
        rps[k, $1] = $6; p50[k, $1] = $7; p99[k, $1] = $8; p90[k, $1] = $12; err[k] += $10 + $11
        pc[k, $1] = $13 * 1e6 / hz / $4; uc[k, $1] = ($14 + $15) * 1e6 / hz / $4
        nc[k, $1] = $16 * 1000 / $4
        next
    }
    FILENAME ~ /tls-close.tsv$/ {
        # rep target n p50 p90 p99 max dur pticks tticks nticks newc resumed reqs tls13
        if ($1 + 1 > R["close"]) R["close"] = $1 + 1
        k = "close" SUBSEP $2
        cpu[k, $1] = $9 * 1e6 / hz / $3; ucpu[k, $1] = ($10 + $11) * 1e6 / hz / $3
        crps[k, $1] = $3 / ($8 / 1e6); c50[k, $1] = $4; c99[k, $1] = $6
        cnew[k] += $12; cres[k] += $13; creq[k] += $14; c13[k] += $15
        next
    }
    FILENAME ~ /tls-burst.tsv$/ {
        # rep target n p50 p90 p99 max dur newc resumed reqs
        if ($1 + 1 > R["burst"]) R["burst"] = $1 + 1
        k = "burst" SUBSEP $2
        b50[k, $1] = $4; b99[k, $1] = $6; if ($7 > bmax[k]) bmax[k] = $7; bnew[k] += $9; bres[k] += $10
        bl[k] = bl[k] sprintf("%s%.1f", (bl[k] == "" ? "" : " "), $6 / 1000)
        next
    }
    END {
        label["direct"] = "upstream directly (wrk over TLS)"; label["nginx"] = "nginx proxy_pass https"
        label["ag-rw"] = "astgate, rewrite"; label["ag-pass"] = "astgate, passthrough"
        label["alt-rw"] = "ALT, rewrite"; label["alt-pass"] = "ALT, passthrough"
        label["ag"] = "astgate"; label["alt"] = "ALT"
        nt = split("direct nginx ag-rw ag-pass" (alt != "" ? " alt-rw alt-pass" : ""), tg, " ")
        FILEK = "ka"
        printf "\n1. keep-alive HTTPS upstream, non-streamed reply (latency us; CPU us per request at c32)\n"
        printf "  %-34s %7s %7s %9s | %8s %7s %8s %9s %9s\n", "", "c1 p50", "c1 p99", "added p50", "c32 rps", "/ nginx", "CPU/req", "upstr CPU", "new conns"
        for (i = 1; i <= nt; i++) {
            t = tg[i]; k1 = 1 SUBSEP t; k32 = 32 SUBSEP t
            if (!((k1, 0) in p50)) continue
            for (r = 0; r < R["ka"]; r++) { ad[r + 1] = p50[k1, r] - p50[1 SUBSEP "direct", r]; ra[r + 1] = rps[k32, r] / rps[32 SUBSEP "nginx", r] }
            ka_ad[t] = t == "direct" ? 0 : med(ad, R["ka"]); ka_ratio[t] = med(ra, R["ka"])
            ka_cpu[t] = m(pc, k32)
            printf "  %-34s %7d %7d %9s | %8.0f %7.2f %8s %9.0f %9.1f\n", label[t], m(p50, k1), m(p99, k1), (t == "direct" ? "" : sprintf("%d", ka_ad[t])), m(rps, k32), ka_ratio[t], (t == "direct" ? "-" : sprintf("%.0f", ka_cpu[t])), m(uc, k32), m(nc, k32)
            if (err[k1] + err[k32] > 0) printf "  !! %s: %d wrk errors or non-2xx replies\n", t, err[k1] + err[k32]
        }
        printf "  (upstr CPU: the TLS terminator + upstream.js per request; new conns: new TLS connections the upstream accepted per 1000 requests, c32)\n"

        FILEK = "close"
        label["nginx13"] = "nginx, proxy_ssl_protocols TLSv1.3"
        nc2 = split("nginx nginx13 ag-pass ag-rw" (alt != "" ? " alt-pass alt-rw" : ""), ct, " ")
        printf "\n2. upstream closes every connection: %d requests at c%d per round (burst.js, client keep-alive)\n", close_n, close_c
        printf "  %-34s %8s %8s | %7s %8s %8s | %9s %11s %s\n", "", "CPU/req", "/ nginx", "rps", "p50", "p99", "upstr CPU", "resumed", "TLS"
        for (i = 1; i <= nc2; i++) {
            t = ct[i]; k = "close" SUBSEP t
            if (!((k, 0) in cpu)) continue
            for (r = 0; r < R["close"]; r++) { rr[r + 1] = cpu[k, r] / cpu["close" SUBSEP "nginx", r]; r13[r + 1] = cpu[k, r] / cpu["close" SUBSEP "nginx13", r] }
            cl_cpu[t] = m(cpu, k); cl_ratio[t] = med(rr, R["close"]); cl_r13[t] = med(r13, R["close"])
            printf "  %-34s %8.0f %8.2f | %7.0f %8.0f %8.0f | %9.0f %5d/%-5d %s\n", label[t], cl_cpu[t], cl_ratio[t], m(crps, k), m(c50, k), m(c99, k), m(ucpu, k), cres[k], cnew[k], (c13[k] == cnew[k] ? "1.3" : c13[k] == 0 ? "1.2" : sprintf("1.3 x %d", c13[k]))
            if (cnew[k] < creq[k] * 0.99) printf "  !! %s: %d new upstream connections for %d requests\n", t, cnew[k], creq[k]
        }
        printf "  (CPU/req: utime + stime of all the proxy'"'"'s processes / requests, us; resumed: TLS connections that resumed a session / new connections, all rounds; TLS: the version negotiated)\n"

        FILEK = "burst"
        nb = split("nginx ag" (alt != "" ? " alt" : ""), bt, " ")
        printf "\n3. cold burst: 32 concurrent requests (rewrite path) against a fresh proxy, keep-alive HTTPS upstream\n"
        printf "  %-34s %8s %8s %8s | %-40s %s\n", "", "p50 ms", "p99 ms", "max ms", "p99 of each burst, ms", "upstream conns (resumed)"
        for (i = 1; i <= nb; i++) {
            t = bt[i]; k = "burst" SUBSEP t
            if (!((k, 0) in b50)) continue
            bu_p99[t] = m(b99, k)
            printf "  %-34s %8.1f %8.1f %8.1f | %-40s %d (%d)\n", label[t], m(b50, k) / 1000, bu_p99[t] / 1000, bmax[k] / 1000, bl[k], bnew[k], bres[k]
        }
        printf "  (p50/p99: medians over the bursts of each burst'"'"'s nearest-rank percentiles; p99 of 32 = the slowest)\n"

        printf "\n== targets (astgate)\n"
        printf "HTTPS keep-alive, c32 rps >= 0.5 x nginx: rewrite %.2f: %s; passthrough %.2f: %s\n", ka_ratio["ag-rw"], (ka_ratio["ag-rw"] >= 0.5 ? "MET" : "NOT MET"), ka_ratio["ag-pass"], (ka_ratio["ag-pass"] >= 0.5 ? "MET" : "NOT MET")
        printf "closing upstream, CPU/req <= 3 x nginx: passthrough %.0f us = %.2f x %.0f: %s; rewrite %.0f us = %.2f x: %s\n", cl_cpu["ag-pass"], cl_ratio["ag-pass"], cl_cpu["nginx"], (cl_ratio["ag-pass"] <= 3 ? "MET" : "NOT MET"), cl_cpu["ag-rw"], cl_ratio["ag-rw"], (cl_ratio["ag-rw"] <= 3 ? "MET" : "NOT MET")
        printf "  (against nginx held to TLSv1.3 as curl negotiates it: passthrough %.2f x, rewrite %.2f x %.0f us)\n", cl_r13["ag-pass"], cl_r13["ag-rw"], cl_cpu["nginx13"]
        printf "cold burst of 32, p99 < 200 ms: %.1f ms (median of %d bursts; worst %.1f ms): %s\n", bu_p99["ag"] / 1000, R["burst"], bmax["burst" SUBSEP "ag"] / 1000, (bu_p99["ag"] < 200000 ? "MET" : "NOT MET")
        if (alt != "") printf "ALT for comparison: keep-alive %.2f / %.2f; closing %.2f / %.2f x nginx; cold burst p99 %.1f ms\n", ka_ratio["alt-rw"], ka_ratio["alt-pass"], cl_ratio["alt-pass"], cl_ratio["alt-rw"], bu_p99["alt"] / 1000
    }' "$out/tls-ka.tsv" "$out/tls-close.tsv" "$out/tls-burst.tsv" | tee "$out/summary.txt"
