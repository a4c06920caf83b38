#!/bin/sh
# Tests of deploy/, one line per check (`ok - `, `not ok - `, `skip - ` with the reason):
#   k8s      every object of deploy/k8s (kustomization rendered by kubectl when it is installed, and
#            by k8s.mjs in any case) against the Kubernetes schemas of kubernetes-models, and the
#            fields astgate needs (probes, preStop, grace period, securityContext, mounts, HPA, PDB)
#   systemd  systemd-analyze verify of deploy/systemd/astgate.service, its directives and exposure;
#            logrotate's reading of astgate.logrotate; READY=1 on $NOTIFY_SOCKET (Type=notify)
#   image    `make image` with podman, then without running a container: podman image inspect,
#            the image's file system exported and astgate run from it under chroot as the image's
#            user (--version, serve --check with the image's and the ConfigMap's configuration, a
#            proxied request to a local HTTPS upstream by host name, the probes' admin port)
# Ends with `deploy: P passed, F failed, S skipped`; exit 1 on any failure.
#
#   tests/deploy/run.sh
set -u
here=$(cd "$(dirname "$0")" && pwd) || exit 2
root=$(cd "$here/../.." && pwd) || exit 2
cd "$root" || exit 2

pass=0
fail=0
skipped=0
ok() {
    pass=$((pass + 1))
    echo "ok - $*"
}
not_ok() {
    fail=$((fail + 1))
    echo "not ok - $*"
}
skip() {
    skipped=$((skipped + 1))
    echo "skip - $*"
}
# the last lines of a file, on one line, for a check's reason
tail_of() {
    tail -n "${2:-3}" "$1" 2>/dev/null | tr '\n' ' ' | sed 's/  */ /g; s/ $//'
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/astgate-deploy.XXXXXX") || exit 2
pids=""
ctr=""
cleanup() {
    for p in $pids; do
        kill "$p" 2>/dev/null
    done
    [ -n "$ctr" ] && podman rm -f "$ctr" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- k8s ----

k8s_tests() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        not_ok "k8s: node and npm are needed (scripts/deps.sh installs them)"
        return
    fi
    # (re)install only when the lock file changed since the last successful install
    if ! cmp -s "$here/package-lock.json" "$here/node_modules/.deploy-lock" 2>/dev/null; then
        if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >"$tmp/npm.log" 2>&1; then
            not_ok "k8s: npm ci in tests/deploy failed: $(tail_of "$tmp/npm.log")"
            return
        fi
        cp "$here/package-lock.json" "$here/node_modules/.deploy-lock"
    fi
    rendered=""
    if command -v kubectl >/dev/null 2>&1; then
        if kubectl kustomize deploy/k8s >"$tmp/kubectl.yaml" 2>"$tmp/kubectl.err"; then
            rendered=$tmp/kubectl.yaml
        else
            not_ok "k8s: kubectl kustomize deploy/k8s failed: $(tail_of "$tmp/kubectl.err")"
        fi
    elif command -v kustomize >/dev/null 2>&1; then
        if kustomize build deploy/k8s >"$tmp/kubectl.yaml" 2>"$tmp/kubectl.err"; then
            rendered=$tmp/kubectl.yaml
        else
            not_ok "k8s: kustomize build deploy/k8s failed: $(tail_of "$tmp/kubectl.err")"
        fi
    fi
    if [ -n "$rendered" ]; then
        node "$here/k8s.mjs" "$root" "$rendered" >"$tmp/k8s.out" 2>&1
    else
        node "$here/k8s.mjs" "$root" >"$tmp/k8s.out" 2>&1
    fi
    rc=$?
    grep -E '^(ok|not ok|skip) - ' "$tmp/k8s.out"
    p=$(grep -c '^ok - ' "$tmp/k8s.out")
    f=$(grep -c '^not ok - ' "$tmp/k8s.out")
    s=$(grep -c '^skip - ' "$tmp/k8s.out")
    pass=$((pass + p))
    fail=$((fail + f))
    skipped=$((skipped + s))
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        not_ok "k8s: k8s.mjs failed outside a check: $(tail_of "$tmp/k8s.out" 5)"
    fi
}

# ---- systemd ----

# a root for systemd-analyze --root: the unit, what its Exec lines run, and the system's units
sysroot() {
    r=$tmp/sysroot
    mkdir -p "$r/etc/systemd/system" "$r/usr/local/bin" "$r/bin" "$r/usr/lib/systemd"
    cp deploy/systemd/astgate.service "$r/etc/systemd/system/"
    printf '#!/bin/sh\n' >"$r/usr/local/bin/astgate"
    chmod 0755 "$r/usr/local/bin/astgate"
    cp /bin/kill "$r/bin/kill" 2>/dev/null || cp "$r/usr/local/bin/astgate" "$r/bin/kill"
    cp /bin/true "$r/bin/true" 2>/dev/null || cp "$r/usr/local/bin/astgate" "$r/bin/true"
    for d in /usr/lib/systemd/system /lib/systemd/system; do
        [ -d "$d" ] && cp -a "$d" "$r/usr/lib/systemd/" && break
    done
    printf '[Unit]\nDescription=control\n[Service]\nType=simple\nExecStart=/bin/true\n' \
        >"$r/etc/systemd/system/astgate-control.service"
}

systemd_tests() {
    unit=deploy/systemd/astgate.service
    # the directives issue 12 asks for, as lines of the unit
    missing=""
    for d in 'Type=notify' 'ExecReload=/bin/kill -HUP $MAINPID' 'KillSignal=SIGTERM' 'DynamicUser=yes' \
        'ProtectSystem=strict' 'ProtectHome=yes' 'NoNewPrivileges=yes' 'PrivateTmp=yes' \
        'SystemCallFilter=@system-service' 'CapabilityBoundingSet='; do
        grep -qxF "$d" "$unit" || missing="$missing '$d'"
    done
    grep -q '^RestrictAddressFamilies=.' "$unit" || missing="$missing RestrictAddressFamilies"
    grep -q '^LimitNOFILE=[0-9]' "$unit" || missing="$missing LimitNOFILE"
    # TimeoutStopSec above timeouts.drain_ms (the default, 30 s, unless the unit says otherwise)
    stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$unit")
    [ -n "$stop" ] && [ "$stop" -gt 30 ] || missing="$missing 'TimeoutStopSec > 30s (timeouts.drain_ms)'"
    if [ -z "$missing" ]; then
        ok "systemd: the unit has Type=notify, ExecReload (SIGHUP), KillSignal=SIGTERM, TimeoutStopSec=${stop}s, DynamicUser and the hardening"
    else
        not_ok "systemd: the unit lacks$missing"
    fi

    if ! command -v systemd-analyze >/dev/null 2>&1; then
        if [ "$(id -u)" -ne 0 ]; then
            skip "systemd: systemd-analyze verify: systemd-analyze is not installed and installing it needs root (apt-get install systemd)"
        else
            not_ok "systemd: systemd-analyze is not installed (scripts/deps.sh installs systemd)"
        fi
    else
        sysroot
        # a trivial unit first: if even that fails, this machine cannot run the check
        if ! systemd-analyze verify --root="$tmp/sysroot" astgate-control.service >"$tmp/control.out" 2>&1 ||
            [ -s "$tmp/control.out" ]; then
            skip "systemd: systemd-analyze verify cannot run here (it fails on a trivial unit too): $(tail_of "$tmp/control.out")"
        elif systemd-analyze verify --root="$tmp/sysroot" astgate.service >"$tmp/verify.out" 2>&1 &&
            ! [ -s "$tmp/verify.out" ]; then
            ok "systemd: systemd-analyze verify $unit: no error, no warning"
        else
            not_ok "systemd: systemd-analyze verify $unit: $(tail_of "$tmp/verify.out" 5)"
        fi
        # systemd's exposure score, 0 (locked down) to 10 (unprotected)
        if systemd-analyze security --offline=yes --root="$tmp/sysroot" astgate.service >"$tmp/sec.out" 2>&1; then
            score=$(sed -n 's/.*Overall exposure level for astgate.service: \([0-9.]*\).*/\1/p' "$tmp/sec.out")
            if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
                ok "systemd: systemd-analyze security: exposure $score (at most 2.0)"
            else
                not_ok "systemd: systemd-analyze security: exposure ${score:-unknown} (above 2.0): $(tail_of "$tmp/sec.out" 2)"
            fi
        else
            skip "systemd: systemd-analyze security --offline cannot run here: $(tail_of "$tmp/sec.out")"
        fi
    fi

    lr=deploy/systemd/astgate.logrotate
    if ! grep -q 'SIGUSR1' "$lr" || ! grep -q 'astgate.service' "$lr"; then
        not_ok "systemd: $lr does not send SIGUSR1 to astgate.service"
    elif ! command -v logrotate >/dev/null 2>&1; then
        skip "systemd: logrotate is not installed: $lr not read (scripts/deps.sh installs it)"
    elif logrotate -d --state "$tmp/logrotate.state" "$lr" >"$tmp/lr.out" 2>&1 &&
        ! grep -qi '^error' "$tmp/lr.out"; then
        ok "systemd: logrotate reads $lr without error; its postrotate sends SIGUSR1 to astgate.service"
    else
        not_ok "systemd: logrotate -d $lr: $(grep -i '^error' "$tmp/lr.out" | head -n 3 | tr '\n' ' ')"
    fi
}

# ---- image ----

# waits (10 s at most) for the Nth line (default: the first) of file $1 that matches $2; prints it
wait_line() {
    i=0
    while [ $i -lt 100 ]; do
        line=$(grep "$2" "$1" 2>/dev/null | sed -n "${3:-1}p") && [ -n "$line" ] && {
            printf '%s\n' "$line"
            return 0
        }
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# a CA and a certificate for the upstream's two names, the CA added to the image's bundle
make_pki() {
    d=$tmp/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=astgate-deploy-test-ca -keyout "$d/ca.key" -out "$d/ca.crt" >"$d/log" 2>&1 &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=upstream.test \
            -keyout "$d/up.key" -out "$d/up.csr" >>"$d/log" 2>&1 &&
        printf 'subjectAltName=DNS:files.upstream.test,DNS:dns.upstream.test\n' >"$d/ext" &&
        openssl x509 -req -in "$d/up.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
            -days 2 -extfile "$d/ext" -out "$d/up.crt" >>"$d/log" 2>&1
}

# runs astgate from the image (as USER) in front of UPSTREAM; GET /v1/models and /healthz
serve_through() {
    upstream=$1
    log=$tmp/serve.$2.log
    chroot --userspec="$user" "$fs" /usr/local/bin/astgate serve --config /etc/astgate/astgate.yaml \
        --listen 127.0.0.1:0 --upstream "$upstream" >"$log" 2>&1 &
    spid=$!
    pids="$pids $spid"
    if ! line=$(wait_line "$log" 'listening on http://'); then
        kill "$spid" 2>/dev/null
        echo "astgate did not start: $(tail_of "$log")"
        return 1
    fi
    aport=$(printf '%s\n' "$line" | sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p')
    body=$(curl -s -m 10 "http://127.0.0.1:$aport/v1/models")
    health=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$aport/healthz")
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    case $body in
    *from-the-fake-upstream*) ;;
    *)
        echo "GET /v1/models answered '$body'; astgate's log: $(grep -v '"type":"access"' "$log" | tail -n 2 | tr '\n' ' ')"
        return 1
        ;;
    esac
    [ "$health" = 200 ] || {
        echo "GET /healthz answered $health"
        return 1
    }
    return 0
}

# podman's storage for these tests when its default one does not work: vfs, in a root of its own
use_vfs() {
    cat >"$tmp/storage.conf" <<EOF
[storage]
driver = "vfs"
runroot = "/run/containers/astgate-deploy-vfs"
graphroot = "/var/lib/containers/astgate-deploy-vfs"
EOF
    CONTAINERS_STORAGE_CONF=$tmp/storage.conf
    export CONTAINERS_STORAGE_CONF
}

image_tests() {
    if ! command -v podman >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then
            scripts/deps.sh >"$tmp/deps.log" 2>&1 || true
        fi
        if ! command -v podman >/dev/null 2>&1; then
            if [ "$(id -u)" -ne 0 ]; then
                skip "image: podman is not installed, and installing it needs root (sudo apt-get install podman): the image is not built"
            else
                not_ok "image: podman is not installed and scripts/deps.sh did not install it: $(tail_of "$tmp/deps.log")"
            fi
            return
        fi
    fi
    # podman picks overlay where the kernel allows it; where overlay fails (inside some
    # containers), a storage of its own with the vfs driver always works (STORAGE_DRIVER would not
    # do: an existing storage keeps the driver it was made with). DEPLOY_PODMAN_STORAGE=vfs forces it
    if [ "${DEPLOY_PODMAN_STORAGE:-}" = vfs ] || ! podman info >"$tmp/podman-info" 2>&1; then
        use_vfs
        if ! podman info >"$tmp/podman-info" 2>&1; then
            not_ok "image: podman does not work here, with its default storage or vfs: $(tail_of "$tmp/podman-info")"
            return
        fi
    fi
    driver=$(podman info --format '{{.Store.GraphDriverName}} {{.Store.GraphRoot}}' 2>/dev/null)
    ok "image: podman $(podman --version | sed 's/^podman version //') answers without a daemon (storage: $driver)"

    if ! ENGINE=podman ${MAKE:-make} --no-print-directory image >"$tmp/make.out" 2>&1 &&
        [ -z "${CONTAINERS_STORAGE_CONF:-}" ] && grep -qi 'overlay\|mount' "$tmp/make.out"; then
        echo "# make image failed with podman's default storage: $(tail_of "$tmp/make.out" 2); again with vfs"
        use_vfs
        ENGINE=podman ${MAKE:-make} --no-print-directory image >"$tmp/make.out" 2>&1
    fi
    if grep -q '^image: ' "$tmp/make.out"; then
        ok "image: make image: $(grep '^image: ' "$tmp/make.out" | tail -n 1 | sed 's/^image: //')"
    else
        not_ok "image: make image failed: $(tail_of "$tmp/make.out" 5)"
        return
    fi

    version=$(podman image inspect --format '{{index .Labels "org.opencontainers.image.version"}}' astgate:latest 2>/dev/null)
    ref=astgate:$version
    id_v=$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null)
    id_l=$(podman image inspect --format '{{.Id}}' astgate:latest 2>/dev/null)
    if [ -n "$version" ] && [ -n "$id_v" ] && [ "$id_v" = "$id_l" ]; then
        ok "image: tagged $ref and astgate:latest (one image)"
    else
        not_ok "image: astgate:latest and astgate:VERSION ('$version') are not the same image"
        return
    fi

    user=$(podman image inspect --format '{{.Config.User}}' "$ref")
    entry=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$ref")
    cmd=$(podman image inspect --format '{{json .Config.Cmd}}' "$ref")
    exposed=$(podman image inspect --format '{{json .Config.ExposedPorts}}' "$ref")
    size=$(podman image inspect --format '{{.Size}}' "$ref")
    uid=${user%%:*}
    case $uid in
    '' | 0 | root | *[!0-9]*) not_ok "image: USER is '$user': not a numeric non-root user (runAsNonRoot needs a number)" ;;
    *) ok "image: USER $user (non-root)" ;;
    esac
    if [ "$entry" = '["/usr/local/bin/astgate"]' ]; then
        ok "image: ENTRYPOINT $entry"
    else
        not_ok "image: ENTRYPOINT is $entry"
    fi
    if [ "$cmd" = '["serve","--config","/etc/astgate/astgate.yaml"]' ]; then
        ok "image: CMD $cmd"
    else
        not_ok "image: CMD is $cmd"
    fi
    case $exposed in
    *'"8080/tcp"'*) ok "image: EXPOSE $exposed" ;;
    *) not_ok "image: EXPOSE is $exposed, not 8080/tcp" ;;
    esac
    if [ -n "$size" ] && [ "$size" -lt 40000000 ]; then
        ok "image: size $size bytes (under 40 MB)"
    else
        not_ok "image: size ${size:-unknown} bytes: not under 40 MB"
    fi

    if [ "$(id -u)" -ne 0 ]; then
        skip "image: the file system is not checked: chroot needs root"
        return
    fi
    # the file system, without running the container: create (not start) and export it, or save
    # the image and unpack its layers
    fs=$tmp/fs
    mkdir -p "$fs"
    if ctr=$(podman create "$ref" 2>"$tmp/create.err") && podman export -o "$tmp/fs.tar" "$ctr" 2>"$tmp/export.err"; then
        podman rm -f "$ctr" >/dev/null 2>&1
        ctr=""
        how="podman create + export"
    else
        [ -n "$ctr" ] && podman rm -f "$ctr" >/dev/null 2>&1
        ctr=""
        mkdir -p "$tmp/save"
        if podman save --format docker-dir -o "$tmp/save/dir" "$ref" >"$tmp/save.err" 2>&1; then
            # docker-dir: manifest.json lists the layer files in order
            layers=$(node -e 'const m=require(process.argv[1]);for(const l of m.layers)console.log(l.digest.replace("sha256:",""))' "$tmp/save/dir/manifest.json")
            for l in $layers; do
                tar -xf "$tmp/save/dir/$l" -C "$fs" || break
            done
            how="podman save"
        else
            not_ok "image: cannot export the file system: create: $(tail_of "$tmp/create.err"); save: $(tail_of "$tmp/save.err")"
            return
        fi
    fi
    if [ -f "$tmp/fs.tar" ]; then
        tar -xf "$tmp/fs.tar" -C "$fs" || {
            not_ok "image: the exported file system does not unpack"
            return
        }
    fi
    files=$(find "$fs" -type f | wc -l)
    ok "image: file system exported ($how): $files files"

    out=$(chroot --userspec="$user" "$fs" /usr/local/bin/astgate --version 2>&1)
    case $out in
    "astgate $version "*) ok "image: chroot as $user: astgate --version: $out" ;;
    *) not_ok "image: chroot as $user: astgate --version: $out" ;;
    esac
    if out=$(chroot --userspec="$user" "$fs" /usr/local/bin/astgate serve --check --config /etc/astgate/astgate.yaml 2>&1); then
        ok "image: chroot as $user: astgate serve --check --config /etc/astgate/astgate.yaml: $out"
    else
        not_ok "image: chroot as $user: astgate serve --check --config /etc/astgate/astgate.yaml: $out"
    fi

    # exactly the libraries the image's loader resolves for the binary, and the loader
    interp=$(readelf -l "$fs/usr/local/bin/astgate" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
    if [ -z "$interp" ] || ! [ -f "$fs$interp" ]; then
        not_ok "image: the loader '$interp' the binary names is not in the image"
    elif ! chroot "$fs" "$interp" --list /usr/local/bin/astgate >"$tmp/list" 2>&1 || grep -q 'not found' "$tmp/list"; then
        not_ok "image: the image's loader cannot resolve the binary's libraries: $(grep 'not found' "$tmp/list" | tr '\n' ' ')"
    else
        sed -n -e 's/^.*=> \(\/[^ ]*\) (0x[0-9a-f]*)$/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x[0-9a-f]*)$/\1/p' \
            "$tmp/list" | sort -u >"$tmp/listed"
        (cd "$fs" && find . -type f -name '*.so*' | sed 's/^\.//' | sort -u) >"$tmp/present"
        if cmp -s "$tmp/listed" "$tmp/present"; then
            ok "image: holds exactly the $(wc -l <"$tmp/listed") shared objects the loader lists (libraries and $interp)"
        else
            not_ok "image: shared objects differ from the loader's list: $(diff "$tmp/listed" "$tmp/present" | grep '^[<>]' | tr '\n' ' ')"
        fi
    fi

    certs=$(grep -c 'BEGIN CERTIFICATE' "$fs/etc/ssl/certs/ca-certificates.crt" 2>/dev/null)
    if [ "${certs:-0}" -gt 10 ]; then
        ok "image: CA bundle /etc/ssl/certs/ca-certificates.crt ($certs certificates)"
    else
        not_ok "image: no CA bundle at /etc/ssl/certs/ca-certificates.crt"
    fi
    if grep -q "^[^:]*:[^:]*:$uid:" "$fs/etc/passwd" && grep -q '^hosts:.*files.*dns' "$fs/etc/nsswitch.conf"; then
        ok "image: /etc/passwd names uid $uid; /etc/nsswitch.conf resolves hosts by files and dns"
    else
        not_ok "image: /etc/passwd has no user $uid, or /etc/nsswitch.conf no 'hosts: files dns'"
    fi

    # a request through astgate run from the image, to an HTTPS upstream named by host name, the
    # test CA added to the image's bundle: /etc/hosts and resolv.conf as a container runtime
    # writes them
    if ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1 || ! make_pki; then
        not_ok "image: cannot make the test certificates (openssl, curl): $(tail_of "$tmp/pki/log")"
    else
        cat "$tmp/pki/ca.crt" >>"$fs/etc/ssl/certs/ca-certificates.crt"
        printf '127.0.0.1 localhost\n127.0.0.1 files.upstream.test\n' >"$fs/etc/hosts"
        printf 'nameserver 127.0.0.153\noptions timeout:2 attempts:2\n' >"$fs/etc/resolv.conf"
        node "$here/fake-upstream.mjs" "$tmp/pki/up.key" "$tmp/pki/up.crt" 127.0.0.153 >"$tmp/up.log" 2>&1 &
        pids="$pids $!"
        if ! ready=$(wait_line "$tmp/up.log" '^ready '); then
            not_ok "image: the fake upstream did not start: $(tail_of "$tmp/up.log")"
        else
            uport=$(printf '%s\n' "$ready" | cut -d' ' -f2)
            if why=$(serve_through "https://files.upstream.test:$uport" files); then
                ok "image: astgate run from the image as $user proxies to https://files.upstream.test (/etc/hosts, the image's CA bundle), /healthz 200"
            else
                not_ok "image: astgate from the image to https://files.upstream.test: $why"
            fi
            case $ready in
            *' dns')
                if why=$(serve_through "https://dns.upstream.test:$uport" dns); then
                    ok "image: astgate run from the image resolves https://dns.upstream.test by DNS (resolv.conf)"
                else
                    not_ok "image: astgate from the image to https://dns.upstream.test (DNS): $why"
                fi
                ;;
            *) skip "image: name resolution by DNS not tried: the test's DNS server $(printf '%s\n' "$ready" | sed 's/^ready [0-9]* nodns //')" ;;
            esac
        fi
    fi

    # the ConfigMap of deploy/k8s mounted at /etc/astgate in place of the image's own
    mv "$fs/etc/astgate" "$fs/etc/astgate.image"
    mkdir -p "$fs/etc/astgate/rules"
    cp deploy/k8s/astgate.yaml "$fs/etc/astgate/"
    cp deploy/k8s/rules/*.yaml "$fs/etc/astgate/rules/"
    if out=$(chroot --userspec="$user" "$fs" /usr/local/bin/astgate serve --check --config /etc/astgate/astgate.yaml 2>&1); then
        ok "image: chroot as $user: the ConfigMap's astgate.yaml and rules pass serve --check: $out"
    else
        not_ok "image: chroot as $user: the ConfigMap's astgate.yaml and rules: $out"
        return
    fi
    # served as the pod would, but on loopback ports of this machine: what the probes ask of the
    # admin port
    sed -e 's/^listen: [^ ]*/listen: 127.0.0.1:0/' -e 's/^admin: [^ ]*/admin: 127.0.0.1:0/' \
        deploy/k8s/astgate.yaml >"$fs/etc/astgate/astgate.yaml"
    log=$tmp/serve.k8s.log
    chroot --userspec="$user" "$fs" /usr/local/bin/astgate serve --config /etc/astgate/astgate.yaml >"$log" 2>&1 &
    spid=$!
    pids="$pids $spid"
    if ! line=$(wait_line "$log" 'admin .* on http://'); then
        not_ok "image: astgate with the ConfigMap's configuration did not start its admin port: $(tail_of "$log")"
        return
    fi
    aport=$(printf '%s\n' "$line" | sed -n 's/.* on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p')
    healthz=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$aport/healthz")
    readyz=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$aport/readyz")
    metrics=$(curl -s -m 5 "http://127.0.0.1:$aport/metrics" | grep -c '^astgate_')
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    if [ "$healthz" = 200 ] && [ "$metrics" -gt 0 ]; then
        ok "image: with the ConfigMap's configuration (its ports on loopback), the admin port answers GET /healthz 200 and /metrics"
    else
        not_ok "image: with the ConfigMap's configuration, the admin port answers /healthz $healthz, /metrics with $metrics astgate_ lines"
    fi
    case $readyz in
    200) ok "image: with the ConfigMap's configuration, the admin port answers GET /readyz 200 (the readiness probe)" ;;
    404) skip "image: GET /readyz on the admin port: 404, this build of astgate does not serve /readyz yet" ;;
    *) not_ok "image: GET /readyz on the admin port answered $readyz" ;;
    esac
}

# Type=notify in the unit needs astgate to send READY=1 on $NOTIFY_SOCKET (an abstract socket
# here, which the chroot does not hide): astgate from the image's file system, a listener in python3
notify_tests() {
    if [ -z "${fs:-}" ] || ! [ -x "$fs/usr/local/bin/astgate" ]; then
        skip "systemd: READY=1 on \$NOTIFY_SOCKET not checked: no image file system to run astgate from (see the image checks)"
        return
    fi
    name="astgate-deploy-test-$$"
    if ! command -v python3 >/dev/null 2>&1; then
        skip "systemd: READY=1 on \$NOTIFY_SOCKET not checked: python3 (the test's listener) is not installed"
        return
    fi
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1])
print("bound", flush=True)
s.settimeout(20)
try:
    while True:
        print(s.recv(4096).decode(errors="replace").replace("\n", " "), flush=True)
except socket.timeout:
    pass
' "$name" >"$tmp/notify.out" 2>&1 &
    pids="$pids $!"
    if ! wait_line "$tmp/notify.out" '^bound' >/dev/null; then
        skip "systemd: READY=1 on \$NOTIFY_SOCKET not checked: the listener did not start: $(tail_of "$tmp/notify.out")"
        return
    fi
    NOTIFY_SOCKET=@$name chroot --userspec="$user" "$fs" /usr/local/bin/astgate serve \
        --config /etc/astgate/astgate.yaml --listen 127.0.0.1:0 >"$tmp/serve.notify.log" 2>&1 &
    spid=$!
    pids="$pids $spid"
    if wait_line "$tmp/notify.out" 'READY=1' >/dev/null; then
        # a reload (systemctl reload): RELOADING=1 with the monotonic time, then READY=1 again
        kill -HUP "$spid" 2>/dev/null
        if wait_line "$tmp/notify.out" '^RELOADING=1 MONOTONIC_USEC=[0-9][0-9]*' >/dev/null &&
            wait_line "$tmp/notify.out" 'READY=1' 2 >/dev/null; then
            ok "systemd: astgate sends RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a reload on SIGHUP"
        else
            not_ok "systemd: no RELOADING=1 then READY=1 after SIGHUP: $(tail_of "$tmp/notify.out") / $(tail_of "$tmp/serve.notify.log" 2)"
        fi
        kill -TERM "$spid" 2>/dev/null
        if wait_line "$tmp/notify.out" 'STOPPING=1' >/dev/null; then
            ok "systemd: astgate sends READY=1 on \$NOTIFY_SOCKET once it listens (Type=notify), STOPPING=1 on SIGTERM"
        else
            not_ok "systemd: astgate sent READY=1 but no STOPPING=1 after SIGTERM"
        fi
    else
        not_ok "systemd: astgate sent no READY=1 on \$NOTIFY_SOCKET in 10 s, and the unit's Type=notify needs it ($(tail_of "$tmp/serve.notify.log" 1))"
    fi
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
}

k8s_tests
systemd_tests
image_tests
notify_tests

echo
echo "deploy: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ] || exit 1
exit 0
