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

bench: ## Go benchmarks; results written to bench.txt
	$(GO) test -run '^$$' -bench . -benchtime 2s $(PKGS) | tee bench.txt
