# Every module of the workspace (go.work). Each is tested on its own so that a
# module's go.mod is what its tests build with.
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
GOTEST  ?= go test -race -count=1 -timeout 15m

.PHONY: test vet lint bench fuzz tidy

## test: vet and test every module with -race (the README's test command)
test: vet
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GOTEST) ./...); done

## vet: go vet every module
vet:
	@set -e; for m in $(MODULES); do (cd $$m && go vet ./...); done

## lint: vet + gofmt + staticcheck (fetched from the Go module proxy)
lint: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	@set -e; for m in $(MODULES); do (cd $$m && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...); done

## bench: benchmarks against the raw floor (needs the databases)
bench:
	@set -e; for m in $(MODULES); do (cd $$m && go test -run '^$$' -bench . -benchmem -count 5 ./...); done

## fuzz: a short fuzz run of key derivation
fuzz:
	go test -run '^$$' -fuzz FuzzRubyKeys -fuzztime 30s .

tidy:
	@set -e; for m in $(MODULES); do (cd $$m && go mod tidy); done
