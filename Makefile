GO      ?= go
BIN     := bin/flightbook
PKGS    := ./...

.PHONY: build run test lint bench tidy

build: ## build the flightbook binary into bin/
	$(GO) build -o $(BIN) ./cmd/flightbook

run: ## run the whole system in one process (both services + embedded NATS)
	$(GO) run ./cmd/flightbook dev

test: ## run every test with the race detector against the local PostgreSQL, MariaDB and NATS
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

lint: ## go vet and staticcheck
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

bench: ## Go benchmarks plus a short load test on flightbook dev; results written to bench/results.txt
	GO=$(GO) scripts/bench.sh
