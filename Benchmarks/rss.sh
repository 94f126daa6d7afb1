#!/usr/bin/env bash
# Issue 7's memory benchmark: the daemon's peak RSS (VmHWM) polling the example plant (deploy/scenario.example.toml:
# a weighbridge, two belt scales, a sludge pump; the simulator serves them) at about 10,000 points/s, next to the
# same binary's VmHWM polling the same plant at one poll a second (the reference, same run). Goal: ≤ 10 MB.
#
# Usage: Benchmarks/rss.sh [SECONDS] [POLL_INTERVAL]     (default 60 s, 2ms)
#        KILNTALLY_BIN=.build-deb/release Benchmarks/rss.sh   (the static-stdlib binaries deploy/build-deb.sh builds)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-60}
FAST=${2:-2ms}
if [[ -z ${KILNTALLY_BIN:-} ]]; then
    swift build -c release --product kilntallyd >&2
    swift build -c release --product kilntally >&2
fi
BIN="${KILNTALLY_BIN:-$(swift build -c release --show-bin-path)}"
DIR="$(mktemp -d /tmp/kilntally-rss.XXXXXX)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
"$BIN/kilntally" simulate --scenario deploy/scenario.example.toml --write-config "$DIR/sim.toml" >"$DIR/sim.log" 2>&1 &
for _ in $(seq 50); do [[ -s $DIR/sim.toml ]] && break; sleep 0.1; done
sleep 1
run() {  # run NAME POLL_INTERVAL -> prints "points_per_second vmhwm_kb"
    local name=$1 interval=$2
    {
        printf '[node]\nsite = "plant-a"\nname = "kiln1"\n[mqtt]\nhost = "127.0.0.1"\nport = 1\n[store]\nmax_bytes = "256MiB"\n'
        sed "s/^poll_interval = .*/poll_interval = \"$interval\"/" "$DIR/sim.toml"
    } >"$DIR/$name.toml"
    "$BIN/kilntallyd" --config "$DIR/$name.toml" --state-dir "$DIR/$name" --socket "$DIR/$name.sock" 2>"$DIR/$name.log" &
    local pid=$!
    sleep "$SECONDS_RUN"
    local hwm
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    # Where the resident pages are (now, not at the peak): private anonymous memory (heaps, stacks, relocated data),
    # pages of the kilntallyd file itself (code the kernel maps around each fault, 64 KiB at a time), shared libraries.
    awk -v bin="$(readlink -f "$BIN/kilntallyd")" '
        /^[0-9a-f]+-[0-9a-f]+ / { name = $6 }
        /^Rss:/ { r = $2 }
        /^Anonymous:/ { a += $2; if (name == bin) b += r - $2; else if (name ~ /^\//) l += r - $2 }
        END { printf "  %s now: anonymous (private) %.1f MB; file pages: kilntallyd %.1f MB, shared libraries %.1f MB\n", n, a/1024, b/1024, l/1024 }
    ' n="$name" /proc/$pid/smaps >&2
    local points
    points=$("$BIN/kilntally" status --json --socket "$DIR/$name.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["newest_seq"])')
    kill -TERM $pid; wait $pid || true
    echo "$(( points / SECONDS_RUN )) $hwm"
}
read -r fast_pps fast_hwm < <(run fast "$FAST")
read -r slow_pps slow_hwm < <(run slow 1s)
awk -v fp="$fast_pps" -v fh="$fast_hwm" -v sp="$slow_pps" -v sh="$slow_hwm" -v s="$SECONDS_RUN" 'BEGIN {
    printf "kilntallyd VmHWM at %d points/s over %d s: %.1f MB (goal <= 10 MB)\n", fp, s, fh / 1024
    printf "reference, same binary at %d points/s: %.1f MB; ratio %.2f\n", sp, sh / 1024, fh / sh
}'
