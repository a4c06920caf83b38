#!/bin/sh
# Stages the root filesystem of astgate's container image in a directory, from this machine's
# files: no base image is pulled, deploy/Dockerfile copies the directory into FROM scratch.
#
#   deploy/stage-rootfs.sh BINARY DIR
#
# DIR (emptied first) gets: the binary at /usr/local/bin/astgate (debug info stripped), exactly the
# shared libraries `ldd BINARY` lists and the loader, each at the path ldd prints; the CA bundle
# and OpenSSL's configuration; /etc/nsswitch.conf (hosts: files dns); /etc/passwd and /etc/group
# with the non-root user astgate (65532); /etc/astgate/astgate.yaml (deploy/astgate.yaml) and
# /etc/astgate/rules/ (rules/*.yaml).
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY DIR" >&2
    exit 2
fi
bin=$1
dir=$2
root=$(cd "$(dirname "$0")/.." && pwd)
UID_GID=65532

die() {
    echo "stage-rootfs: $*" >&2
    exit 1
}

if ! [ -f "$bin" ] || ! [ -x "$bin" ]; then
    die "$bin: not an executable"
fi
case $dir in
"" | / | /usr | /etc) die "refusing to empty '$dir'" ;;
esac
rm -rf "$dir"
mkdir -p "$dir"

# copy FILE to the same path under DIR, following symbolic links: the image has the content at the
# path the loader asks for, whatever this machine's /lib, /lib64 and /usr/lib links look like
put() {
    [ -e "$1" ] || die "$1: missing on this machine"
    mkdir -p "$dir$(dirname "$1")"
    cp -L "$1" "$dir$1"
}

install -D -m 0755 "$bin" "$dir/usr/local/bin/astgate"
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$dir/usr/local/bin/astgate"
fi

# ldd prints "soname => /path (addr)", "/path/to/loader (addr)" and the vDSO (no file)
libs=$(ldd "$bin") || die "ldd $bin failed"
if printf '%s\n' "$libs" | grep -q 'not found'; then
    printf '%s\n' "$libs" >&2
    die "ldd: a library is not found"
fi
paths=$(printf '%s\n' "$libs" | sed -n -e 's/^.*=> \(\/[^ ]*\) (0x[0-9a-f]*)$/\1/p' \
    -e 's/^[[:space:]]*\(\/[^ ]*\) (0x[0-9a-f]*)$/\1/p' | sort -u)
[ -n "$paths" ] || die "ldd listed no library"
for p in $paths; do
    put "$p"
done

# glibc before 2.34 resolves host names through NSS modules it loads at run time; since 2.34
# files and dns are built into libc.so.6, and nsswitch.conf names nothing else
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
if [ -n "$glibc" ] && [ "${glibc% *}" -eq 2 ] && [ "${glibc#* }" -lt 34 ]; then
    libdir=$(dirname "$(printf '%s\n' "$paths" | grep '/libc\.so\.6$')")
    put "$libdir/libnss_files.so.2"
    put "$libdir/libnss_dns.so.2"
    put "$libdir/libresolv.so.2"
fi
mkdir -p "$dir/etc"
cat >"$dir/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF

# libcurl's default CA bundle (Debian: /etc/ssl/certs/ca-certificates.crt), and OpenSSL's
# directory as Debian lays it out (OPENSSLDIR /usr/lib/ssl, its entries links into /etc/ssl)
put /etc/ssl/certs/ca-certificates.crt
ssldir=$(openssl version -d 2>/dev/null | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')
ssldir=${ssldir:-/usr/lib/ssl}
if [ -e "$ssldir/openssl.cnf" ]; then
    mkdir -p "$dir/etc/ssl" "$dir$ssldir"
    cp -L "$ssldir/openssl.cnf" "$dir/etc/ssl/openssl.cnf"
    if [ "$ssldir" != /etc/ssl ]; then
        ln -s /etc/ssl/openssl.cnf "$dir$ssldir/openssl.cnf"
        ln -s /etc/ssl/certs "$dir$ssldir/certs"
        ln -s /etc/ssl/certs/ca-certificates.crt "$dir$ssldir/cert.pem"
    fi
fi

cat >"$dir/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
astgate:x:$UID_GID:$UID_GID:astgate:/nonexistent:/sbin/nologin
EOF
cat >"$dir/etc/group" <<EOF
root:x:0:
astgate:x:$UID_GID:
EOF

install -D -m 0644 "$root/deploy/astgate.yaml" "$dir/etc/astgate/astgate.yaml"
mkdir -p "$dir/etc/astgate/rules"
for r in "$root"/rules/*.yaml; do
    install -m 0644 "$r" "$dir/etc/astgate/rules/"
done

# root owns everything; the non-root user reads it all and writes nothing
chmod -R u=rwX,go=rX "$dir"
chmod 0755 "$dir/usr/local/bin/astgate"
