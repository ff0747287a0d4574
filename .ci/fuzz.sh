#!/usr/bin/env bash
# CI: run every fuzz target of the module briefly (FUZZTIME each, default
# 10s). Targets are found by name (func FuzzX in a _test.go file), so a new
# one is fuzzed without editing this script. A crash fails the step and
# leaves the input in the package's testdata/fuzz/<Target>/: commit it, and
# plain `go test` replays it as a kept case from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
found=0
while IFS= read -r file; do
	pkg="./$(dirname "$file")"
	for name in $(grep -oE '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		found=$((found + 1))
		echo "--- fuzz $name ($pkg, $fuzztime)"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
	done
done < <(grep -rlE --include='*_test.go' '^func Fuzz' . | sed 's|^\./||' | sort)
if [ "$found" -eq 0 ]; then
	echo "no fuzz targets found" >&2
	exit 1
fi
