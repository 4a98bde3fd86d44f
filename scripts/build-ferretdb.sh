#!/usr/bin/env bash
# build-ferretdb.sh builds FerretDB v1.24.2 (the MongoDB-wire server the
# store tests start, see internal/testenv) into the cache path the tests look
# in, so `go test` does not pay the build. With FERRETDB_BIN set it builds to
# that path instead (the tests then need the same FERRETDB_BIN).
#
# The module zip lacks build/version/version.txt, without which the binary
# panics at start, so the build runs in a writable copy of the module with
# that file written.
set -euo pipefail

version=v1.24.2

if [[ -n "${FERRETDB_BIN:-}" ]]; then
	out=$FERRETDB_BIN
else
	# Same directory as os.UserCacheDir() in Go.
	if [[ "$(uname)" == Darwin ]]; then
		cache=$HOME/Library/Caches
	else
		cache=${XDG_CACHE_HOME:-$HOME/.cache}
	fi
	out=$cache/presenced-testbin/ferretdb-$version
fi

if [[ -x "$out" && "${1:-}" != "-f" ]]; then
	echo "build-ferretdb: $out exists (pass -f to rebuild)"
	exit 0
fi

export GOWORK=off GOFLAGS=-mod=mod
src=$(go mod download -json "github.com/FerretDB/FerretDB@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
if [[ -z "$src" ]]; then
	echo "build-ferretdb: go mod download gave no Dir" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -R "$src/." "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$work/src/build/version"
printf '%s' "$version" >"$work/src/build/version/version.txt"

mkdir -p "$(dirname "$out")"
tmp=$out.tmp.$$
(cd "$work/src" && go build -o "$tmp" ./cmd/ferretdb)
mv -f "$tmp" "$out"
echo "build-ferretdb: built $out"
