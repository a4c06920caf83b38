#!/bin/sh
# Fetches the pinned tree-sitter-typescript grammar from the npm registry, checks its
# published integrity hash and unpacks the generated parser sources into grammars/.
set -eu
version=0.23.2
integrity="sha512-e04JUUKxTT53/x3Uq1zIL45DoYKVfHH4CZqwgZhPg5qYROl5nQjV+85ruFzFGZxu+QeFVbRTPDRnqL9UbU4VeA=="
url="https://registry.npmjs.org/tree-sitter-typescript/-/tree-sitter-typescript-$version.tgz"
dest="${1:-grammars}/tree-sitter-typescript"
[ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$version" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "astgate: fetching tree-sitter-typescript $version from the npm registry" >&2
curl -sSfL --retry 3 -o "$tmp/pkg.tgz" "$url"
got="sha512-$(openssl dgst -sha512 -binary "$tmp/pkg.tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
    echo "astgate: integrity mismatch for $url" >&2
    echo "  expected $integrity" >&2
    echo "  got      $got" >&2
    exit 1
fi
tar -xzf "$tmp/pkg.tgz" -C "$tmp" package/common package/typescript/src package/tsx/src package/LICENSE
rm -rf "$dest"
mkdir -p "$dest"
cp -r "$tmp/package/common" "$tmp/package/typescript" "$tmp/package/tsx" "$tmp/package/LICENSE" "$dest/"
echo "$version" >"$dest/.version"
