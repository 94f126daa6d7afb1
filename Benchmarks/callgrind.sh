#!/usr/bin/env bash
# CPU instructions per decoded reading, counted by valgrind's callgrind (instruction counts repeat on a noisy shared
# machine where timings do not). Runs `acquisition-benchmark decode N` at two values of N and divides the difference
# in instructions by the difference in N, which cancels start-up and shutdown. The per-reading budget end to end
# (acquisition, decoding, store, uplink) is 5,000 instructions; this prints the decode share of it.
#
# Usage: Benchmarks/callgrind.sh [N1 N2]      (default 20000 220000)
# valgrind is not part of deploy/setup.sh (benchmarks run by hand, CI never needs it); install it with:
#   apt-get install -y valgrind
set -euo pipefail
cd "$(dirname "$0")/.."
# A first argument "tally" counts the tally engine instead of decoding (Benchmarks/AcquisitionBenchmark/TallyBenchmark.swift).
MODE=decode
# "store" (submit + group commit into the reading ring) and "encode" (read back + readings payloads) are the other
# stages; Benchmarks/callgrind.sh all prints the four and their sum against the budget.
# valgrind 3.19 (Debian 12) crashed on an async main parked in libdispatch's rt_sigsuspend (the store and encode
# modes now wait on a semaphore instead), and still never finishes the store stage beyond ~2,000 readings (threads
# serialized under valgrind; not investigated). This VM has no PMU for `perf stat`. `all` gives each stage 10 minutes
# and says which stages it could not count.
if [[ ${1:-} == all ]]; then
    shift
    total=0
    missing=()
    for m in decode store tally encode; do
        if line=$(timeout 600 "$0" "$m" "$@" 2>/dev/null | tail -1) && [[ $line == *"instructions per reading"* ]]; then
            echo "$line"
            n=$(sed -n 's/^[a-z]*: *\([0-9]*\) instructions.*/\1/p' <<<"$line")
            total=$((total + n))
        else
            echo "$m: not measured (callgrind failed on this stage)"
            missing+=("$m")
        fi
    done
    echo "end to end: $total instructions per reading counted = $(awk -v t=$total 'BEGIN { printf "%.1f", t / 50 }') % of the 5,000-instruction budget${missing[*]:+; not counted: ${missing[*]}} (libmosquitto's send and the kernel never are)"
    exit 0
fi
if [[ ${1:-} == tally || ${1:-} == decode || ${1:-} == store || ${1:-} == encode ]]; then MODE=$1; shift; fi
N1=${1:-20000}
N2=${2:-220000}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed: apt-get install -y valgrind" >&2; exit 69; }
swift build -c release --product acquisition-benchmark >&2
# valgrind 3.19 (Debian 12) cannot read the DWARF 5 debug info Swift 6 emits ("unhandled dwarf2 abbrev form code
# 0x25 ... I can't recover"): count on a copy without it (the instructions are the same).
BIN="$(mktemp /tmp/acquisition-benchmark.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
strip --strip-debug -o "$BIN" "$(swift build -c release --show-bin-path)/acquisition-benchmark"
instructions() {
    # callgrind prints "==PID== Collected : <instructions>" on stderr at exit.
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" "$MODE" "$1" 2>&1 >/dev/null \
        | sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}
I1=$(instructions "$N1")
I2=$(instructions "$N2")
[[ -n $I1 && -n $I2 ]] || { echo "callgrind.sh: no instruction count from callgrind" >&2; exit 1; }
awk -v mode="$MODE" -v i1="$I1" -v i2="$I2" -v n1="$N1" -v n2="$N2" 'BEGIN {
    per = (i2 - i1) / (n2 - n1)
    printf "callgrind: %.0f instructions for %d readings, %.0f for %d (start-up and shutdown: %.0f)\n", i1, n1, i2, n2, i1 - per * n1
    printf "%s:    %.0f instructions per reading (difference / %d readings) = %.1f %% of the 5,000-instruction end-to-end budget\n", mode, per, n2 - n1, per / 50
}'
