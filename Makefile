# presenced — see README.md.
.PHONY: run test build bench

run:
	go run ./cmd/presenced

build:
	CGO_ENABLED=0 go build -o presenced ./cmd/presenced

test:
	scripts/test.sh

bench:
	bench/run.sh
