#!/usr/bin/env bash
# Run the test suite (tap, files serially: they mount) and end with one line a CI can read:
# "N passed, N failed", counting test blocks (each `t.test`). Exit non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/*.test.ts)
npx tap --reporter=tap "${files[@]}" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
# Test blocks are the points one level into each file (4 spaces of indent).
passed=$(grep -cE '^    ok [0-9]+' "$out")
failed=$(grep -cE '^    not ok [0-9]+' "$out")
files_failed=$(grep -cE '^not ok [0-9]+' "$out")
left=$(awk '$3 ~ /^fuse/ || $3 == "overlay" {print $2}' /proc/mounts | grep -E '^/tmp/strata-test-' || true)
if [ -n "$left" ]; then
  echo "# mounts left behind by the tests:"; echo "$left"
  failed=$((failed + 1))
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=$((files_failed > 0 ? files_failed : 1)); fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
