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
# callgrind_annotate on the larger run minus the smaller one; the binary's own code is split into
# astgate, llhttp (the HTTP/1.1 parser compiled in) and the grammar (ts_lex and the tables).
#
# With INSTR_TLS=1 (the default when openssl is installed) the same for an HTTPS upstream: nginx
# terminating TLS in front of upstream.js (bench/proxy/nginx-tls-upstream.conf.in, a throwaway CA
# from bench/proxy/pki.sh in bench/out/proxy-tls/pki), astgate on its passthrough path with
# `tls: {ca_file: BUNDLE}` and nginx with proxy_pass https:// (bench/proxy/nginx-tls.conf.in),
# once with a keep-alive upstream and once with one that closes every connection (a new TLS
# connection per request; INSTR_TLS_N=50 requests after INSTR_W; nginx also with
# proxy_ssl_protocols TLSv1.3, as its default stops at TLSv1.2); each TLS row also gives the
# per-request instructions under SSL_CTX_new, the handshake (SSL_connect/SSL_do_handshake) and
# the CA file load (X509_STORE_load_file), inclusive.
#
# Usage: bench/proxy/instr.sh [ASTGATE_BINARY]   (default build/astgate; INSTR_N=200 INSTR_W=20;
#        INSTR_NGINX=0 skips the nginx rows, INSTR_TLS=0 the HTTPS ones; INSTR_ONLY=REGEX keeps the
#        rows whose label matches; INSTR_KEEP=DIR keeps the callgrind files)
# Needs valgrind, node and nginx (apt-get install -y valgrind nginx-light). About 2 minutes
# (3 with the HTTPS rows).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${1:-build/astgate}
n=${INSTR_N:-200}
w=${INSTR_W:-20}
tls_n=${INSTR_TLS_N:-50}
with_nginx=${INSTR_NGINX:-1}
with_tls=${INSTR_TLS:-$(command -v openssl >/dev/null && echo 1 || echo 0)}
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
binname=$(basename "$bin")
by_object() { # callgrind output file: "object Ir" lines
    callgrind_annotate --inclusive=no --threshold=100 --auto=no "$1" 2>/dev/null |
        awk -v bin="$binname" 'match($0, /^ *[0-9,]+ \(.*\[[^]]*\] *$/) && !/PROGRAM TOTALS/ {
            v = $1; gsub(",", "", v)
            o = $0; sub(/^.*\[/, "", o); sub(/\].*$/, "", o); sub(/.*\//, "", o)
            if (o == bin) {
                if ($0 ~ /ts_lex|tree_sitter_typescript/) o = "grammar-in-astgate"
                else if ($0 ~ /llhttp/) o = "llhttp"
                else o = "astgate"
            }
            sub(/\.so(\.[0-9]+)*$/, "", o)
            s[o] += v }
            END { for (o in s) print o, s[o] }'
}
incl() { # callgrind output file, function: its inclusive Ir (0 when never called)
    callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$1" 2>/dev/null |
        awk -v f="$2" '{ g = $0; sub(/ \[.*$/, "", g); sub(/.*:/, "", g) }
            g == f && !found { v = $1; gsub(",", "", v); found = 1 }
            END { print found ? v : 0 }'
}
run_one() { # proxy requests path stream: callgrind output file on stdout
    # proxy: astgate, nginx; astgate-tls-ka, astgate-tls-close, nginx-tls-ka, nginx-tls-close
    local proxy=$1 reqs=$2 path=$3 stream=$4 port vp out up
    port=$(free_port)
    out=$tmp/cg.$proxy.$reqs.${path//\//_}.$stream
    up=http://127.0.0.1:$up_port
    case $proxy in
    *-tls-ka) up=https://127.0.0.1:$tls_ka ;;
    *-close) up=https://127.0.0.1:$tls_close ;;
    esac
    if [[ $proxy == nginx* ]]; then
        if [ "$proxy" = nginx ]; then
            sed -e "s|@DIR@|$ngx|g" -e "s|@PORT@|$port|g" -e "s|@UPPORT@|$up_port|g" \
                -e "s|@WORKERS@|1|g" -e 's|^master_process on;|master_process off;|' \
                bench/proxy/nginx.conf.in >"$ngx/nginx.conf"
        else
            # the server for the other upstream listens on a port nobody uses
            local p_ka p_close p_close13
            p_ka=$(free_port) p_close=$(free_port) p_close13=$(free_port)
            case $proxy in
            nginx-tls-ka) p_ka=$port ;;
            nginx-tls-close) p_close=$port ;;
            nginx-tls13-close) p_close13=$port ;;
            esac
            sed -e "s|@DIR@|$ngx|g" -e "s|@PORT@|$p_ka|g" -e "s|@CLOSEPORT@|$p_close|g" \
                -e "s|@CLOSE13PORT@|$p_close13|g" \
                -e "s|@UPKA@|$tls_ka|g" -e "s|@UPCLOSE@|$tls_close|g" -e "s|@CA@|$tmp/pki/bundle.pem|g" \
                -e "s|@WORKERS@|1|g" -e 's|^master_process on;|master_process off;|' \
                bench/proxy/nginx-tls.conf.in >"$ngx/nginx.conf"
        fi
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
        local cfg=()
        [[ $proxy == *-tls-* ]] && cfg=(--config "$tmp/tls.yaml")
        valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve \
            --listen "127.0.0.1:$port" --upstream "$up" \
            --rules rules/mastra.yaml --workers 1 "${cfg[@]}" 2>"$tmp/vg.log" &
        vp=$!
        wait_line "$tmp/vg.log" 'listening on'
    fi
    node bench/proxy/client.js "$port" "$reqs" "$path" "$stream"
    # nginx stops gracefully on QUIT, astgate on TERM (again if the first one goes unnoticed)
    local sig=TERM i
    [[ $proxy == nginx* ]] && sig=QUIT
    kill -"$sig" "$vp" 2>/dev/null || true
    for ((i = 1; i <= 600; i++)); do
        grep -q 'refs:' "$tmp/vg.log" 2>/dev/null && break
        kill -0 "$vp" 2>/dev/null || break
        if [ $((i % 50)) = 0 ]; then
            echo "instr: $proxy still runs 5 s after SIG$sig: sending it again" >&2
            kill -"$sig" "$vp" 2>/dev/null || true
        fi
        sleep 0.1
    done
    wait "$vp" 2>/dev/null || true
    if [ -n "${INSTR_KEEP:-}" ]; then
        mkdir -p "$INSTR_KEEP"
        cp "$out" "$INSTR_KEEP/"
    fi
    echo "$out"
}

targets='astgate|/v1/chat/completions|0|astgate, non-streamed rewrite
astgate|/v1/chat/completions|1|astgate, streamed rewrite
astgate|/bench/passthrough|0|astgate, passthrough path'
[ "$with_nginx" = 1 ] && targets+='
nginx|/v1/chat/completions|0|nginx proxy_pass, non-streamed
nginx|/v1/chat/completions|1|nginx proxy_pass, streamed'
if [ "$with_tls" = 1 ]; then
    # the HTTPS upstream: nginx terminating TLS in front of upstream.js, run as nginx.conf.in is
    bench/proxy/pki.sh bench/out/proxy-tls/pki
    mkdir -p "$tmp/pki" "$tmp/term"
    cp bench/out/proxy-tls/pki/{server.pem,server.key,bundle.pem} "$tmp/pki/"
    chmod 644 "$tmp"/pki/*
    printf 'tls:\n  ca_file: %s\n' "$tmp/pki/bundle.pem" >"$tmp/tls.yaml"
    tls_ka=$(free_port)
    tls_close=$(free_port)
    sed -e "s|@DIR@|$tmp/term|g" -e "s|@UPPORT@|$up_port|g" -e "s|@KAPORT@|$tls_ka|g" \
        -e "s|@CLOSEPORT@|$tls_close|g" -e "s|@CERT@|$tmp/pki/server.pem|g" \
        -e "s|@KEY@|$tmp/pki/server.key|g" bench/proxy/nginx-tls-upstream.conf.in >"$tmp/term/nginx.conf"
    tcmd=(nginx -p "$tmp/term" -e "$tmp/term/error.log" -c "$tmp/term/nginx.conf")
    if [ "$(id -u)" = 0 ]; then
        chown -R 65534:65534 "$tmp/term"
        tcmd=(setpriv --reuid=65534 --regid=65534 --clear-groups "${tcmd[@]}")
    fi
    "${tcmd[@]}" >"$tmp/term.out" 2>&1 &
    pids+=($!)
    for ((i = 0; i < 200; i++)); do
        curl -s -o /dev/null --cacert "$tmp/pki/bundle.pem" "https://127.0.0.1:$tls_ka/stats" && break
        sleep 0.05
    done
    if "$bin" serve --config "$tmp/tls.yaml" --rules rules/mastra.yaml --check >/dev/null 2>&1; then
        targets+='
astgate-tls-ka|/bench/passthrough|0|astgate, https keep-alive, pass
astgate-tls-close|/bench/passthrough|0|astgate, https closing, pass'
    else
        echo "instr: $bin has no tls key in its configuration: no HTTPS rows for it" >&2
    fi
    [ "$with_nginx" = 1 ] && targets+='
nginx-tls-ka|/v1/chat/completions|0|nginx, https keep-alive
nginx-tls-close|/v1/chat/completions|0|nginx, https closing
nginx-tls13-close|/v1/chat/completions|0|nginx, https closing, TLSv1.3'
fi

printf '%-44s %9s   %s\n' "target ($n requests after $w)" "instr/req" "by library (instr/req)"
while IFS='|' read -r proxy path stream label; do
    [[ $label =~ ${INSTR_ONLY:-.} ]] || continue
    reqs=$n
    [[ $proxy == *-tls* ]] && reqs=$tls_n
    a=$(run_one "$proxy" "$w" "$path" "$stream")
    b=$(run_one "$proxy" "$((w + reqs))" "$path" "$stream")
    per=$((($(totals "$b") - $(totals "$a")) / reqs))
    split=$(LC_ALL=C join -a1 -e0 -o 0,1.2,2.2 <(by_object "$b" | LC_ALL=C sort -k1,1) \
        <(by_object "$a" | LC_ALL=C sort -k1,1) |
        awk -v n="$reqs" '{ d = ($2 - $3) / n; if (d >= 1000) printf "%s %.0fk\n", $1, d / 1000 }' |
        sort -k2 -rn | head -7 | paste -sd, | sed 's/,/, /g')
    [[ $proxy == *-tls* ]] && label="$label ($reqs after $w)"
    printf '%-44s %9d   %s\n' "$label" "$per" "$split"
    if [[ $proxy == *-tls* ]]; then
        of=""
        for f in SSL_CTX_new_ex SSL_do_handshake X509_STORE_load_file_ex X509_verify_cert; do
            d=$((($(incl "$b" "$f") - $(incl "$a" "$f")) / reqs))
            of+="${of:+, }$f $((d / 1000))k"
        done
        printf '%-44s %9s   %s\n' "" "" "inclusive: $of"
    fi
done <<<"$targets"
