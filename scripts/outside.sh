#!/usr/bin/env bash
# Builds a module outside the repository against this checkout exactly as
# the README's "Using Kannuki before the first release" says, then compiles
# every quick start of the README as written, runs the file-lock one and
# the installed CLI. CI runs it; it needs the Go module proxy for pgx and
# the drivers.
set -euo pipefail
checkout=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Keep the machine's module and build caches; the rest is a new user's.
GOPATH=$(go env GOPATH) GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)
export GOPATH GOMODCACHE GOCACHE HOME="$work/home" GOBIN="$work/bin"
mkdir -p "$HOME/src" "$GOBIN"
unset GOWORK GOFLAGS

# The clone of the README is this checkout.
ln -s "$checkout" "$HOME/src/kannuki"

# section prints the fenced blocks of language $2 under the README heading $1
# (up to the next heading of the same level), separated by NUL bytes.
section() {
	awk -v head="$1" -v lang="$2" '
		$0 == head { on = 1; level = index(head, " "); next }
		on && /^#+ / && index($0, " ") <= level { on = 0 }
		on && $0 == "```" lang { inblock = 1; next }
		inblock && $0 == "```" { inblock = 0; printf "%c", 0; next }
		inblock { print }
	' "$checkout/README.md"
}

app="$work/myapp"
mkdir -p "$app" && cd "$app"
go mod init example.com/myapp >/dev/null 2>&1

# The install commands, minus the clone (the checkout is linked instead).
install=$(section "### Using Kannuki before the first release" sh | tr -d '\0' | grep -v '^git clone ' | grep -v '^cd myapp')
[ -n "$install" ] || { echo "outside: the README has no install commands"; exit 1; }

# Each quick start into a package of its own.
n=0
while IFS= read -r -d '' block; do
	n=$((n + 1))
	dir="$app/quickstart$n"
	mkdir -p "$dir"
	if grep -q '^package main$' <<<"$block"; then
		printf '%s\n' "$block" >"$dir/main.go"
	else
		printf '%s\n' "$block" >"$dir/quickstart_test.go"
	fi
done < <(section "## Quick start" go)
[ "$n" -ge 5 ] || { echo "outside: found $n quick starts in the README, want at least 5"; exit 1; }

# The README's commands, in order (go mod tidy finds the quick starts' imports).
(set -x; eval "$install")

go vet ./...
go test ./...
out=$(cd "$app" && for d in quickstart*; do
	if grep -q 'kannukifile.New' "$d/main.go" 2>/dev/null; then go run "./$d"; fi
done)
grep -q "hello from inside the lock" <<<"$out" || { echo "outside: the file-lock quick start printed: $out"; exit 1; }
# The pgxpool quick start against a real server when there is one (CI).
if [ -n "${KANNUKI_PG_DSN:-}" ]; then
	pgx=$(grep -l 'kannukipgxv5.New' quickstart*/main.go | head -1)
	sed -i "s|postgres://app@db/app|$KANNUKI_PG_DSN|" "$pgx"
	go run "./$(dirname "$pgx")" 2>&1 | grep -q "processing order 123" || { echo "outside: the pgxpool quick start did not run"; exit 1; }
fi
hello=$("$GOBIN/kannuki" run --key outside-demo -- sh -c 'echo hello')
[ "$hello" = hello ] || { echo "outside: the installed CLI printed: $hello"; exit 1; }
echo "outside: $n quick starts built outside the repository; the CLI installed and ran"
