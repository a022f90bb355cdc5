# shirath: see README.md. Integration tests carry the build tag `integration`
# and run against the real servers of the local stack (or your own, through
# the SHIRATH_* variables).
GO        ?= go
STACK     := bash internal/stack/stack.sh
PKGS      := ./...
TESTFLAGS ?= -race -count=1 -timeout 75m
BIN       := bin/shirath

.PHONY: all build up down status unit test integration bench soak crash-points demo fmt vet check clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/shirath

up:
	$(STACK) up

down:
	$(STACK) down

status:
	$(STACK) status

# Unit tests: pure logic, no server needed.
unit:
	$(GO) test $(TESTFLAGS) $(PKGS)

# Every test, unit and integration, against the real servers (started if needed).
# -p 1: packages one at a time, because a cluster test stops a node, which
# would fail the ON CLUSTER statements of a package running beside it.
# Test artifacts (the status page's screenshots) are kept under .artifacts/.
test: up
	$(GO) vet -tags integration $(PKGS)
	SHIRATH_TEST_ARTIFACTS=$(CURDIR)/.artifacts $(GO) test -tags integration -p 1 $(TESTFLAGS) $(PKGS)

# Benchmarks report ratios to a baseline run side by side in each iteration
# (see README, Benchmarks). -p 1: nothing else builds or runs beside them.
# Their output is kept under .bench/; BENCHMARKS.md is written from it
# (medians of the -count 3 samples, the machine, the server versions).
bench: up
	mkdir -p .bench
	$(STACK) status > .bench/servers.txt
	$(GO) test -tags integration -p 1 -run '^$$' -bench . -benchtime 1x -count 3 -timeout 180m $(PKGS) > .bench/bench.txt 2>&1 \
		|| { cat .bench/bench.txt; exit 1; }
	cat .bench/bench.txt
	$(GO) run ./internal/benchreport -servers .bench/servers.txt -o BENCHMARKS.md .bench/bench.txt

# The soak (see README, Soak): daemons reconcile 20 MVs on the cluster and on
# the 18.16 node under writers and node restarts, then every MV must be exact
# and the daemons' memory and goroutines flat. SOAK_DURATION=3m for a short run.
SOAK_DURATION ?= 15m
soak: up
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -tags 'integration soak' -count=1 -run '^TestSoak$$' -timeout 90m -v ./internal/e2e/

# A crash at every point of the executor (issue 12): a creation, a change
# and a destroy killed at each point under a writer, on both single nodes and
# the cluster, with a table of outcomes. Long (tens of minutes): not part of
# make test.
crash-points: up
	$(GO) test -tags 'integration crashpoints' -count=1 -run 'CrashAtEveryPoint' -timeout 180m -v ./internal/e2e/

demo: up build
	bash internal/demo/demo.sh

fmt:
	gofmt -l -w .

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration $(PKGS)
	$(GO) vet -tags 'integration soak' ./internal/e2e/
	$(GO) vet -tags 'integration crashpoints' ./internal/e2e/

check:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) vet -tags integration $(PKGS)

clean:
	rm -rf bin
