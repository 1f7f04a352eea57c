#!/usr/bin/env bash
# Runs the whole suite (make test) RUNS times (default 5), each with two
# CPU-bound processes beside it, and prints one line per run: the flake
# hunt of the newcomer issue. The databases are the ones the environment
# names (KANNUKI_PG_DSN, KANNUKI_MYSQL_DSN, ...), as for make test; point
# them at servers nothing else uses while it runs. Logs: $OUT/runN.log.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
out=${OUT:-$(mktemp -d)}
export KANNUKI_TEST_REQUIRE_DB=${KANNUKI_TEST_REQUIRE_DB:-1}
failed=0
for i in $(seq 1 "$runs"); do
	bash -c 'while :; do :; done' & b1=$!
	bash -c 'while :; do :; done' & b2=$!
	start=$(date +%s)
	make test >"$out/run$i.log" 2>&1
	rc=$?
	kill "$b1" "$b2"
	wait "$b1" "$b2" 2>/dev/null
	fails=$(grep -E '^(--- FAIL|FAIL)' "$out/run$i.log" | tr '\n' ' ')
	echo "run $i: rc=$rc $(( $(date +%s) - start ))s, $(grep -c '^ok ' "$out/run$i.log") packages ok ${fails:+, failed: $fails}"
	[ "$rc" = 0 ] || failed=$((failed + 1))
done
echo "$runs runs under load, $failed failed (logs in $out)"
[ "$failed" = 0 ]
