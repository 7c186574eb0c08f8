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
TEST_TIMEOUT ?= 60m
# Fuzzing budget per target: short in `make test`, longer in `make fuzz`.
# Counted in executions, not seconds: with a duration, go1.26's fuzz
# coordinator can report its own deadline as a failure ("context deadline
# exceeded", no failing input; golang/go#75804, fixed in go1.27), which a
# busy CI machine hits. A count has no deadline to race.
FUZZ_SHORT ?= 20000x
FUZZTIME   ?= 1000000x
FUZZ_TARGETS := ./proxy:FuzzRouteMatch ./proxy:FuzzHeaderRewriting ./proxy/xds:FuzzDecode

.PHONY: all setup build engine node-image run test vet fmt-check tidy-check bench fuzz fuzz-short gate-validity clean

all: build

setup:
	@./scripts/setup.sh

# meshbench-proxy is the proxy role alone, which runs the own mesh's
# proxies from beside bin/meshbench (a third of the resident memory).
build: setup
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/meshbench
	CGO_ENABLED=0 $(GO) build -o $(dir $(BIN))meshbench-proxy ./cmd/meshbench-proxy
	CGO_ENABLED=0 $(GO) build -o $(dir $(BIN))meshbench-pod-process ./cmd/meshbench-pod-process

# A Docker engine for the kind platform and its tests: one that answers is
# left alone; otherwise Debian's docker.io, started as scripts/engine.sh says.
engine: build
	@if [ "$$(id -u)" -eq 0 ] || docker info >/dev/null 2>&1; then ./scripts/engine.sh $(BIN); \
	else echo "engine: not root and no Docker engine answers: the kind tests will say they are skipped"; fi

# The kind node image, offline: from the cache (seconds), or built from
# Debian packages and the Go module proxy (see the README for how long).
node-image: engine
	@if [ "$$(id -u)" -eq 0 ]; then ./$(BIN) cluster build-node-image; \
	else echo "node-image: building it needs root (debootstrap, chroot): the kind tests will say they are skipped"; fi

run: build
	./$(BIN) run $(SCENARIO) $(ARGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# go.mod and go.sum must be what `go mod tidy` makes of them: a direct
# dependency marked indirect (or a stale line) fails here, not in review.
tidy-check:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; $(GO) mod tidy -diff; exit 1; }

# Every test, integration tests included (real processes, sockets and, as
# root, network namespaces). -p 1 runs packages one at a time: a run cleans
# up what dead runs left behind, and the crash-recovery test needs to be the
# one that finds its own dead run's leftovers.
test: setup fmt-check tidy-check vet engine node-image
	MESHBENCH_ENGINE=$$([ "$$(id -u)" -eq 0 ] && echo required) $(GO) test -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...
	@echo "proxy tests again, HTTP/1.1 listeners on the fasthttp engine (MESHBENCH_TEST_HTTP1=fasthttp)"
	MESHBENCH_TEST_HTTP1=fasthttp $(GO) test -count=1 -timeout 10m ./proxy/
	$(MAKE) --no-print-directory fuzz-short

# Each fuzz target for a bounded time (go test -fuzz takes one target at a
# time). Findings land in testdata/fuzz and become regression tests.
fuzz-short:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$fn ($$pkg), -fuzztime $(FUZZ_SHORT)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZ_SHORT) $$pkg || exit 1; done

fuzz:
	$(MAKE) --no-print-directory fuzz-short FUZZ_SHORT=$(FUZZTIME)

# Go benchmarks of the hot paths (proxy; the load client's per-request
# latency recording), then the data-plane benchmark scenario:
# per mode, added p50/p99 against the baseline and each proxy's CPU and RSS,
# medians with [min, max] over 5 interleaved trials, load generator and
# system under test pinned to different CPUs.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./proxy/... ./runner/workload/
	./$(BIN) run bench $(ARGS)

# The regression gate's false-alarm rate (A/A) and power against a ~10%
# p99 regression (A/B), measured on this machine: RUNS pairs of `gate`
# runs, about 3 minutes per pair. See the README.
gate-validity: build
	RUNS=$(or $(RUNS),8) ./scripts/gate-validity.sh

clean:
	rm -rf bin
