# shirath: see README.md. Integration tests carry the build tag `integration`
# and run against the real servers of the local stack (or your own, through
# the SHIRATH_* variables).
GO        ?= go
STACK     := bash internal/stack/stack.sh
PKGS      := ./...
TESTFLAGS ?= -race -count=1 -timeout 75m
BIN       := bin/shirath

.PHONY: all build up down status unit test integration bench demo fmt vet check clean

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
	$(GO) test -tags integration -p 1 -run '^$$' -bench . -benchtime 1x -count 3 -timeout 90m $(PKGS) > .bench/bench.txt 2>&1 \
		|| { cat .bench/bench.txt; exit 1; }
	cat .bench/bench.txt
	$(GO) run ./internal/benchreport -servers .bench/servers.txt -o BENCHMARKS.md .bench/bench.txt

demo: up build
	bash internal/demo/demo.sh

fmt:
	gofmt -l -w .

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration $(PKGS)

check:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) vet -tags integration $(PKGS)

clean:
	rm -rf bin
