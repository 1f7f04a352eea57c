#!/usr/bin/env bash
# Usage: scripts/release.sh VERSION [--dry-run]
#
# Releases every published module at VERSION: checks that every module is
# tidy, makes each published module require its Kannuki siblings at VERSION
# instead of the development replace directives, commits that, and tags
# every published module (VERSION for the root, DIR/VERSION for the others,
# as the go command wants for modules in subdirectories). With --dry-run it
# does the same in a throwaway worktree, checks the result, prints the
# tags, and changes nothing here.
set -euo pipefail
version=${1:-}
dry=${2:-}
die() { echo "release: $*" >&2; exit 1; }
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "VERSION must look like v0.1.0 (got \"$version\")"
[[ -z $dry || $dry == --dry-run ]] || die "unknown argument $dry"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
prefix=github.com/kannuki-go/kannuki
# The modules users import; the others (examples, bench, chaos,
# integration) stay on the workspace and keep their replace lines.
published=(. kannukipgxv5 kannukiotel kannukiprom kannukiriver kannukiasynq cmd/kannuki)

make --no-print-directory tidy-check >/dev/null || die "a module is not tidy (make tidy)"
for dir in "${published[@]}"; do
	tag=$version
	[ "$dir" = . ] || tag=$dir/$version
	if git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then die "tag $tag exists"; fi
done

if [ -n "$dry" ]; then
	tree=$(mktemp -d)
	git worktree add -q --detach "$tree" HEAD
	trap 'git -C "$root" worktree remove --force "$tree"' EXIT
else
	[ -z "$(git status --porcelain)" ] || die "the working tree has changes; commit them first"
	tree=$root
fi

for dir in "${published[@]}"; do
	mod="$tree/$dir/go.mod"
	edits=()
	while read -r path; do edits+=("-require=$path@$version"); done < <(
		go mod edit -json "$mod" | awk -v p="$prefix" '/"Path": /{gsub(/[",]/,"",$2); if (index($2,p)==1) print $2}' | sort -u)
	while read -r path; do edits+=("-dropreplace=$path"); done < <(
		grep -E "^(replace )?[[:space:]]*$prefix[^ ]* =>" "$mod" | sed -E "s/^replace //; s/^[[:space:]]*//; s/ .*//" | sort -u)
	own=$(go mod edit -json "$mod" | awk '/"Module": /{m=1} m && /"Path": /{gsub(/[",]/,"",$2); print $2; exit}')
	filtered=()
	for e in "${edits[@]}"; do [[ $e == "-require=$own@"* ]] || filtered+=("$e"); done
	[ ${#filtered[@]} -eq 0 ] || go mod edit "${filtered[@]}" "$mod"
	# Check: no development replace is left, every sibling is at VERSION.
	if grep -qE "$prefix[^ ]* =>" "$mod"; then die "$dir/go.mod still replaces a Kannuki module"; fi
	bad=$(go mod edit -json "$mod" | awk -v p="$prefix" -v v="$version" '
		/"Require"/ {r=1} r && /"Path": /{gsub(/[",]/,"",$2); path=$2}
		r && /"Version": /{gsub(/[",]/,"",$2); if (index(path,p)==1 && $2!=v) print path" "$2}')
	[ -z "$bad" ] || die "$dir/go.mod requires $bad, not $version"
done

tags=()
for dir in "${published[@]}"; do
	if [ "$dir" = . ]; then tags+=("$version"); else tags+=("$dir/$version"); fi
done
if [ -n "$dry" ]; then
	git -C "$tree" diff --stat
	echo "release (dry run): would commit the go.mod changes above and tag: ${tags[*]}"
	exit 0
fi
git commit -q -am "release $version: modules require each other at $version"
for t in "${tags[@]}"; do git tag "$t"; done
echo "release: tagged ${tags[*]}; push with: git push origin ${tags[*]}"
