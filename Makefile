# Every module of the workspace (go.work). Each is tested on its own so that a
# module's go.mod is what its tests build with.
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
GOTEST  ?= go test -race -count=1 -timeout 15m

.PHONY: test vet lint bench bench-go bench-smoke chaos fuzz tidy tidy-check release outside

## test: vet and test every module with -race, then run every benchmark once
## (the README's test command; CI runs it)
test: vet
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GOTEST) ./...); done
	@$(MAKE) --no-print-directory bench-smoke

## bench-smoke: every Go benchmark once, so that none can rot
bench-smoke:
	@set -e; for m in $(MODULES); do (cd $$m && go test -run '^$$' -bench . -benchtime=1x ./... >/dev/null) || { echo "benchmarks failed in $$m"; exit 1; }; done
	@echo "benchmarks: all ran once"

## vet: go vet every module
vet:
	@set -e; for m in $(MODULES); do (cd $$m && go vet ./...); done

## lint: vet + gofmt + staticcheck (fetched from the Go module proxy)
lint: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	@set -e; for m in $(MODULES); do (cd $$m && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...); done

## bench: the full benchmark report against the raw floors and the peers; writes BENCHMARKS.md
bench:
	cd bench && go run ./cmd/kannukibench -out ../BENCHMARKS.md

## bench-go: every module's Go benchmarks, 5 counts each
bench-go:
	@set -e; for m in $(MODULES); do (cd $$m && go test -run '^$$' -bench . -benchmem -count 5 ./...); done

## chaos: the long fault and load run; writes RELIABILITY.md (restarts the local databases!)
chaos:
	cd chaos && go run ./cmd/chaosreport -long -out ../RELIABILITY.md

## fuzz: a short fuzz run of key derivation
fuzz:
	go test -run '^$$' -fuzz FuzzRubyKeys -fuzztime 30s ./keys

## tidy: go mod tidy every module
tidy:
	@set -e; for m in $(MODULES); do (cd $$m && go mod tidy); done

## tidy-check: fail if any module's go.mod or go.sum is not tidy (CI runs it)
tidy-check:
	@set -e; for m in $(MODULES); do (cd $$m && go mod tidy -diff) || { echo "not tidy: $$m (run make tidy)"; exit 1; }; done
	@echo "modules: all tidy"

## release: tag every published module at VERSION (make release VERSION=v0.1.0);
## DRY_RUN=1 shows what it would do and changes nothing
release:
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=v0.1.0 [DRY_RUN=1]"; exit 1; }
	bash scripts/release.sh $(VERSION) $(if $(DRY_RUN),--dry-run)

## outside: build a module outside the tree as the README's install section says
outside:
	bash scripts/outside.sh
