#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind: a figure that the
# load of a shared machine does not move, for comparing revisions and for seeing where a proxy's
# CPU goes (kernel time is not counted).
#
# For each target the proxy runs under callgrind twice, serving W and then W + N sequential
# keep-alive requests (bench/proxy/client.js) from the bench upstream (upstream.js); the difference
# divided by N is the cost of one request without start-up and shutdown. Targets: astgate
# (--workers 1) on a non-streamed and a streamed chat completion and on its passthrough path, and
# nginx (one worker process, no master) as the plain proxy. The per-library split comes from
# callgrind_annotate on the larger run minus the smaller one.
#
# Usage: bench/proxy/instr.sh [ASTGATE_BINARY]   (default build/astgate; INSTR_N=200 INSTR_W=20)
# Needs valgrind, node and nginx (apt-get install -y valgrind nginx-light). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${1:-build/astgate}
n=${INSTR_N:-200}
w=${INSTR_W:-20}
for t in valgrind callgrind_annotate node nginx; do
    if ! command -v "$t" >/dev/null; then
        echo "instr: $t is needed (apt-get install -y valgrind nginx-light)" >&2
        exit 1
    fi
done
[ -x "$bin" ] || {
    echo "instr: $bin missing: run make first" >&2
    exit 1
}

tmp=$(mktemp -d /tmp/astgate-instr.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
        console.log(s.address().port); s.close(); })'
}
wait_line() { # file pattern
    local i
    for ((i = 0; i < 200; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "instr: timed out waiting for '$2' in $1" >&2
    cat "$1" >&2
    exit 1
}

node bench/proxy/upstream.js 0 >"$tmp/upstream.out" 2>&1 &
pids+=($!)
wait_line "$tmp/upstream.out" '^listening'
up_port=$(awk '/^listening/ { print $2 }' "$tmp/upstream.out")

# nginx: one process (master_process off), unprivileged when run as root
ngx=$tmp/nginx
mkdir -p "$ngx"
chmod 755 "$tmp"

totals() { # callgrind output file: total Ir
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}
by_object() { # callgrind output file: "object Ir" lines
    callgrind_annotate --inclusive=no --threshold=100 --auto=no "$1" 2>/dev/null |
        awk 'match($0, /^ *[0-9,]+ \(.*\[[^]]*\] *$/) && !/PROGRAM TOTALS/ {
            v = $1; gsub(",", "", v)
            o = $0; sub(/^.*\[/, "", o); sub(/\].*$/, "", o); sub(/.*\//, "", o)
            if (o == "astgate" && $0 ~ /ts_lex|tree_sitter_typescript/) o = "grammar-in-astgate"
            s[o] += v }
            END { for (o in s) print o, s[o] }'
}
run_one() { # proxy(astgate|nginx) requests path stream: callgrind output file on stdout
    local proxy=$1 reqs=$2 path=$3 stream=$4 port vp out
    port=$(free_port)
    out=$tmp/cg.$proxy.$reqs.${path//\//_}.$stream
    if [ "$proxy" = nginx ]; then
        sed -e "s|@DIR@|$ngx|g" -e "s|@PORT@|$port|g" -e "s|@UPPORT@|$up_port|g" \
            -e "s|@WORKERS@|1|g" -e 's|^master_process on;|master_process off;|' \
            bench/proxy/nginx.conf.in >"$ngx/nginx.conf"
        local cmd=(valgrind --tool=callgrind --callgrind-out-file="$out" nginx -p "$ngx"
            -e "$ngx/error.log" -c "$ngx/nginx.conf")
        if [ "$(id -u)" = 0 ]; then
            chown -R 65534:65534 "$ngx"
            chmod 777 "$tmp"
            cmd=(setpriv --reuid=65534 --regid=65534 --clear-groups "${cmd[@]}")
        fi
        "${cmd[@]}" >"$tmp/vg.log" 2>&1 &
        vp=$!
        local i
        for ((i = 0; i < 200; i++)); do
            curl -s -o /dev/null "http://127.0.0.1:$port/stats" && break
            sleep 0.05
        done
    else
        valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve \
            --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$up_port" \
            --rules rules/mastra.yaml --workers 1 2>"$tmp/vg.log" &
        vp=$!
        wait_line "$tmp/vg.log" 'listening on'
    fi
    node bench/proxy/client.js "$port" "$reqs" "$path" "$stream"
    # nginx stops gracefully on QUIT, astgate on TERM
    kill -"$([ "$proxy" = nginx ] && echo QUIT || echo TERM)" "$vp" 2>/dev/null || true
    wait "$vp" 2>/dev/null || true
    echo "$out"
}

printf '%-34s %12s   %s\n' "target ($n requests after $w)" "instr/req" "by library (instr/req)"
while IFS='|' read -r proxy path stream label; do
    a=$(run_one "$proxy" "$w" "$path" "$stream")
    b=$(run_one "$proxy" "$((w + n))" "$path" "$stream")
    per=$((($(totals "$b") - $(totals "$a")) / n))
    split=$(LC_ALL=C join -a1 -e0 -o 0,1.2,2.2 <(by_object "$b" | LC_ALL=C sort -k1,1) \
        <(by_object "$a" | LC_ALL=C sort -k1,1) |
        awk -v n="$n" '{ d = ($2 - $3) / n; if (d >= 1000) printf "%s %.0fk\n", $1, d / 1000 }' |
        sort -k2 -rn | head -6 | paste -sd, | sed 's/,/, /g')
    printf '%-34s %12d   %s\n' "$label" "$per" "$split"
done <<'TARGETS'
astgate|/v1/chat/completions|0|astgate, non-streamed rewrite
astgate|/v1/chat/completions|1|astgate, streamed rewrite
astgate|/bench/passthrough|0|astgate, passthrough path
nginx|/v1/chat/completions|0|nginx proxy_pass, non-streamed
nginx|/v1/chat/completions|1|nginx proxy_pass, streamed
TARGETS
