#!/usr/bin/env bash
# CI: run every fuzz target of the module briefly (FUZZTIME each, default
# 5000x: 5,000 inputs). A count, not a duration: with a duration, Go 1.26's
# fuzz coordinator can fail a target with a bare "context deadline exceeded"
# when the time runs out while a worker on a loaded machine is mid-input
# (golang/go#75804, fixed in Go 1.27; it failed CI here once), and a count
# has no deadline to race. Targets are found by name (func FuzzX in a _test.go file), so a new
# one is fuzzed without editing this script. A crash fails the step and
# leaves the input in the package's testdata/fuzz/<Target>/: commit it, and
# plain `go test` replays it as a kept case from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-5000x}"
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
