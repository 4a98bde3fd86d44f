# presenced — see README.md.
.PHONY: run test build bench

run:
	go run ./cmd/presenced

# The version comes from the build info (module version, VCS revision).
# The toolchain records no build time, and no revision in a git worktree or
# with -buildvcs=false: both are passed in. OUT names the binary. The binary
# is static (CGO_ENABLED=0; SQLite is pure Go), so deploy/Containerfile runs
# it on a base image with no C library.
OUT ?= presenced
build:
	CGO_ENABLED=0 go build -buildvcs=auto -ldflags "-X main.buildTime=$$(date -u +%Y-%m-%dT%H:%M:%SZ) -X main.revision=$$(git rev-parse HEAD 2>/dev/null)$$(test -n "$$(git status --porcelain 2>/dev/null)" && echo -modified)" -o $(OUT) ./cmd/presenced

test:
	scripts/test.sh

bench:
	bench/run.sh
