#!/usr/bin/env bash
# CPU instructions per reading, counted by valgrind's callgrind (instruction counts repeat on a noisy shared machine
# where timings do not), for each stage of the per-reading path: `acquisition-benchmark MODE N` runs at two values of
# N and the difference in instructions is divided by the difference in N, which cancels start-up and shutdown. The
# per-reading budget end to end (acquisition, decoding, store, tally, uplink) is 5,000 instructions; each stage prints
# its share of it, `all` prints the four and their sum.
#
# Usage: Benchmarks/callgrind.sh [decode|store|tally|encode|all] [N1 N2 [--rate R]]   (default decode 20000 220000)
#   decode  RegisterDecoder on a plant mix of channels (Benchmarks/AcquisitionBenchmark/DecodeBenchmark.swift)
#   store   submit in polls of 12 + a group commit (frames, write, fdatasync) every R readings, R = 10,000 by default:
#           the daemon commits once per sync_interval (1 s), so one commit per R readings is a plant at R readings/s
#   tally   inputs through the tally engine (TallyBenchmark.swift)
#   encode  durable readings read back from the ring in batches of 200 and encoded as the uplink's `readings`
#           payloads (Payloads.readings), from frames the store stage's way wrote (StageBenchmarks.swift)
# store and encode count from StageBenchmarks.startCounting() on (valgrind --zero-before), so opening the store,
# making the readings and filling the ring for encode are not in their figures; their main thread waits on a
# semaphore (valgrind 3.19 crashed on an async main parked in libdispatch's rt_sigsuspend) while the stage runs on
# the cooperative pool and the store's own thread, which callgrind serializes (the count is the sum of all threads).
# This VM has no PMU for `perf stat`. `all` gives each stage 10 minutes and says which stages it could not count.
# valgrind is not part of deploy/setup.sh (benchmarks run by hand, CI never needs it); install it with:
#   apt-get install -y valgrind
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=decode
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
shift $(($# < 2 ? $# : 2))
EXTRA=("$@")  # e.g. --rate R for store and encode
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed: apt-get install -y valgrind" >&2; exit 69; }
swift build -c release --product acquisition-benchmark >&2
# valgrind 3.19 (Debian 12) cannot read the DWARF 5 debug info Swift 6 emits ("unhandled dwarf2 abbrev form code
# 0x25 ... I can't recover"): count on a copy without it (the instructions are the same).
BIN="$(mktemp /tmp/acquisition-benchmark.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
strip --strip-debug -o "$BIN" "$(swift build -c release --show-bin-path)/acquisition-benchmark"
instructions() {
    # callgrind prints "==PID== Collected : <instructions>" on stderr at exit.
    # --zero-before: counting restarts when the store and encode stages call startCounting() (after their set-up).
    # SWIFT_DETERMINISTIC_HASHING: Swift seeds its hasher per process, so dictionary probe lengths (the store's series
    # dictionary) and with them the count varied by ~3 % from run to run; with a fixed seed it repeats within 0.01 %.
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null --zero-before='*StageBenchmarks*startCounting*' \
        "$BIN" "$MODE" "$1" ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 >/dev/null \
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
