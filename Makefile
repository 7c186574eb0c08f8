# meshbench: `make run` and `make test` do all set-up on a fresh machine.
GO      ?= go
BIN     := bin/meshbench
PKG     := github.com/meshbench/meshbench
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X $(PKG)/cmd/meshbench/app.version=$(VERSION) -X $(PKG)/cmd/meshbench/app.commit=$(COMMIT)
# SCENARIO and ARGS pass through to `meshbench run`, e.g.
#   make run SCENARIO=smoke ARGS="--trials 1"
SCENARIO ?=
ARGS     ?=
# Go test timeout for `make test`; CI allows 90 minutes in all.
TEST_TIMEOUT ?= 30m

.PHONY: all setup build run test vet fmt-check bench fuzz clean

all: build

setup:
	@./scripts/setup.sh

build: setup
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/meshbench

run: build
	./$(BIN) run $(SCENARIO) $(ARGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every test, integration tests included (real processes, sockets and, as
# root, network namespaces). -p 1 runs packages one at a time: a run cleans
# up what dead runs left behind, and the crash-recovery test needs to be the
# one that finds its own dead run's leftovers.
test: setup fmt-check vet
	$(GO) test -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
