#!/usr/bin/env bash
# test.sh is the project's one test command (`make test` calls it): it
# installs what the tests need when it is missing, then runs go vet,
# staticcheck and the race-enabled test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# need CMD PATH PACKAGE installs PACKAGE with apt unless CMD is on PATH or
# PATH is executable (the package lists are updated once, at the first
# install).
apt_updated=""
need() {
	if command -v "$1" >/dev/null 2>&1 || [[ -x $2 ]]; then
		return
	fi
	echo "test: installing $3 with apt"
	local sudo_cmd=""
	[[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
	if [[ -z $apt_updated ]]; then
		$sudo_cmd apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$3" >/dev/null
}

need redis-server /usr/bin/redis-server redis-server
# The Sentinel tests run `redis-server --sentinel`, which is in redis-server
# itself; redis-sentinel is installed too so that the packaged setup the
# docs describe is the one tested.
need redis-sentinel /usr/bin/redis-sentinel redis-sentinel
# The store tests start a real MongoDB-wire server (FerretDB); build it
# once into the user cache so the tests do not pay for it.
scripts/build-ferretdb.sh

# The Socket.IO e2e tests drive the reference client (socket.io-client) from
# Node.js; install it from the lockfile when node_modules is missing or
# older than package-lock.json (npm writes node_modules/.package-lock.json
# on every install, so its age is the install's).
sioclient=e2e/sioclient
if [[ ! -d $sioclient/node_modules || $sioclient/package-lock.json -nt $sioclient/node_modules/.package-lock.json ]]; then
	if ! command -v npm >/dev/null 2>&1; then
		echo "test: npm not found: the Socket.IO e2e tests need Node.js 20 and npm" >&2
		exit 1
	fi
	echo "test: npm ci --prefix $sioclient"
	npm ci --no-audit --no-fund --prefix "$sioclient"
fi

# The admin panel's e2e test (TestAdminPanelBrowser) drives a headless
# chromium; without it the test fails rather than skips.
need /usr/bin/chromium /usr/bin/chromium chromium

# deploy/'s test runs nginx on the example configuration and proxies a
# WebSocket through it; without nginx that test fails rather than skips.
need nginx /usr/sbin/nginx nginx-light

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
