#!/usr/bin/env bash
# test.sh is the project's one test command (`make test` calls it): it
# installs what the tests need when it is missing, then runs go vet,
# staticcheck and the race-enabled test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 && [[ ! -x /usr/bin/redis-server ]]; then
	echo "test: installing redis-server with apt"
	sudo_cmd=""
	[[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
	$sudo_cmd apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
fi
# The store tests start a real MongoDB-wire server (FerretDB); build it
# once into the user cache so the tests do not pay for it.
scripts/build-ferretdb.sh

echo "test: go vet"
go vet ./...
echo "test: staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "test: go test -race"
go test -race -count=1 -timeout 30m ./...
# Each fuzz target runs briefly on top of its checked-in seed corpus
# (testdata/fuzz), which the plain test run above already replays.
for target in "FuzzDecoder ./internal/wsproto/" "FuzzVerify ./auth/" "FuzzClaims ./auth/"; do
	set -- $target
	echo "test: fuzz $1 (${FUZZTIME:-10s})"
	go test -run='^$' -fuzz="^$1\$" -fuzztime="${FUZZTIME:-10s}" "$2"
done
