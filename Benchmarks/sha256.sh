#!/usr/bin/env bash
# SHA-256 throughput: Tally's pure-Swift SHA256 (release, -O -wmo) against coreutils' sha256sum on the same data,
# in the same run; prints both in MB/s and their ratio (best of N runs each, data in the page cache). The Swift side
# is compiled standalone from Sources/Tally/SHA256.swift (it depends on nothing else), so no package build is needed.
#   Benchmarks/sha256.sh [MEGABYTES] [RUNS]     (defaults 64 and 5)
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-64}
RUNS=${2:-5}
work=$(mktemp -d /tmp/sha256-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

swiftc -O -wmo -parse-as-library Sources/Tally/SHA256.swift Benchmarks/SHA256/main.swift -o "$work/sha256-benchmark"
head -c $((MB * 1000000)) /dev/urandom >"$work/data"
sha256sum "$work/data" >/dev/null  # into the page cache

best_swift=0 best_coreutils=0
for _ in $(seq "$RUNS"); do
    read -r swift_digest swift_rate < <("$work/sha256-benchmark" "$work/data" 1)
    start=$(date +%s%N)
    coreutils_digest=$(sha256sum "$work/data" | cut -d' ' -f1)
    end=$(date +%s%N)
    [[ $swift_digest == "$coreutils_digest" ]] || { echo "digests differ: $swift_digest vs $coreutils_digest" >&2; exit 1; }
    coreutils_rate=$(awk -v mb="$MB" -v ns=$((end - start)) 'BEGIN { printf "%.1f", mb / (ns / 1e9) }')
    best_swift=$(awk -v a="$best_swift" -v b="$swift_rate" 'BEGIN { print (b > a ? b : a) }')
    best_coreutils=$(awk -v a="$best_coreutils" -v b="$coreutils_rate" 'BEGIN { print (b > a ? b : a) }')
done
awk -v s="$best_swift" -v c="$best_coreutils" -v mb="$MB" -v runs="$RUNS" -v v="$(sha256sum --version | head -1)" 'BEGIN {
    printf "SHA-256 over %d MB, best of %d runs\n  Tally SHA256 (swiftc -O): %7.1f MB/s\n  %s: %7.1f MB/s (includes reading the cached file)\n  ratio Tally/sha256sum:     %7.2f\n", mb, runs, s, v, c, s / c }'
