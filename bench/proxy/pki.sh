#!/usr/bin/env bash
# A throwaway PKI for the HTTPS benchmarks (bench/run-proxy-tls.sh, bench/proxy/instr.sh):
#
#   bench/proxy/pki.sh DIR
#
# writes, unless DIR/bundle.pem exists already:
#   DIR/ca.pem, DIR/ca.key          a CA (ECDSA P-256, valid 7 days, CN astgate-bench-ca)
#   DIR/server.pem, DIR/server.key  a server certificate it signed, for DNS:localhost and
#                                   IP:127.0.0.1 (ECDSA P-256, as the big API hosts serve)
#   DIR/bundle.pem                  the system's CA bundle followed by ca.pem: what both proxies
#                                   trust, so a proxy that loads its CA store pays for a real one
#                                   (~140 roots), not for one certificate
set -euo pipefail
dir=$1
[ -s "$dir/bundle.pem" ] && exit 0
mkdir -p "$dir"
system=${PKI_SYSTEM_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 7 \
    -subj /CN=astgate-bench-ca -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req "${ec[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" -subj /CN=localhost \
    2>/dev/null
printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
    'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 7 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null
if [ -r "$system" ]; then
    cat "$system" "$dir/ca.pem" >"$dir/bundle.pem.tmp"
else
    cp "$dir/ca.pem" "$dir/bundle.pem.tmp"
fi
chmod 644 "$dir"/*.pem "$dir"/*.key
mv "$dir/bundle.pem.tmp" "$dir/bundle.pem"
