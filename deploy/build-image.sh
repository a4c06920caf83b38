#!/bin/sh
# Builds astgate's container image from deploy/Dockerfile, without any registry: stages the root
# file system (deploy/stage-rootfs.sh) and copies it into FROM scratch. Uses podman, or docker when
# podman is missing and a docker engine answers; ENGINE=podman|docker chooses. Tags the image
# astgate:VERSION (what `BINARY --version` prints) and astgate:latest, and prints its size.
#
#   deploy/build-image.sh [BINARY]        (default build/astgate; `make image` builds it first)
#
# The staging directory is build/image (IMAGE_DIR overrides it).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/astgate}
ctx=${IMAGE_DIR:-$root/build/image}

die() {
    echo "image: $*" >&2
    exit 1
}

engine=${ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then
        engine=podman
    elif command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
        engine=docker
    elif command -v docker >/dev/null 2>&1; then
        die "docker is installed but its engine does not answer, and podman is missing (apt-get install podman)"
    else
        die "neither podman nor docker is installed (apt-get install podman)"
    fi
fi

[ -x "$bin" ] || die "$bin: not an executable (make build/astgate)"
version=$("$bin" --version | sed -n 's/^astgate \([^ ]*\).*/\1/p')
[ -n "$version" ] || die "$bin --version printed no version"
revision=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)

"$root/deploy/stage-rootfs.sh" "$bin" "$ctx/rootfs"
previous=$("$engine" image inspect --format '{{.Id}}' astgate:latest 2>/dev/null || true)
# podman keeps an image per Dockerfile step unless told not to; the build takes a second anyway
layers=""
[ "$engine" = podman ] && layers=--layers=false
"$engine" build --quiet $layers -f "$root/deploy/Dockerfile" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    -t "astgate:$version" -t astgate:latest "$ctx" >/dev/null
# the image this build replaced, once no tag names it any more (another version's tag keeps it)
id=$("$engine" image inspect --format '{{.Id}}' astgate:latest)
if [ -n "$previous" ] && [ "$previous" != "$id" ]; then
    "$engine" rmi "$previous" >/dev/null 2>&1 || true
fi

size=$("$engine" image inspect --format '{{.Size}}' "astgate:$version")
mb=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1000000 }')
echo "image: astgate:$version and astgate:latest ($engine, revision $revision): $mb MB ($size bytes)"
