#!/usr/bin/env bash
# The README's run command: kilntally end to end on an embedded default.
#   simulated belt scale (kilntally simulate, libmodbus server)
#     → kilntallyd (polls it over Modbus TCP, stores every reading, publishes over MQTT)
#     → a mosquitto broker on a free loopback port
#     → mosquitto_sub as the hub subscriber, whose output is what this prints.
# Usage: deploy/demo.sh [--duration SECONDS]   (default: run until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=""
while (($#)); do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --duration=*) DURATION="${1#*=}"; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument $1 (usage: deploy/demo.sh [--duration SECONDS])" >&2; exit 64 ;;
    esac
done

./deploy/setup.sh >&2
if [[ -n "${KILNTALLY_BIN_DIR:-}" ]]; then
    BIN="$KILNTALLY_BIN_DIR"   # binaries built already (the test suite runs the demo this way)
else
    echo "demo: building" >&2
    swift build -q >&2
    BIN="$(swift build --show-bin-path)"
fi

WORK="$(mktemp -d /tmp/kilntally-demo.XXXXXX)"
PIDS=()
cleanup() {
    # Stop the daemon first (it publishes "offline"), then the subscriber, then the peers.
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "demo: nothing listens on port $1 ($2 did not start); its log:" >&2
    cat "$WORK/$2.log" >&2 || true
    exit 1
}

BROKER_PORT="$(free_port)"
SIM_PORT="$(free_port)"

cat > "$WORK/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
log_dest stderr
persistence false
CONF
/usr/sbin/mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
MOSQ=$!
wait_port "$BROKER_PORT" mosquitto

"$BIN/kilntally" simulate --listen "127.0.0.1:$SIM_PORT" >"$WORK/simulator.log" 2>&1 &
SIM=$!
wait_port "$SIM_PORT" simulator

cat > "$WORK/kilntally.toml" <<CONF
[node]
site = "demo-plant"
name = "kiln1-edge"

[mqtt]
host = "127.0.0.1"
port = $BROKER_PORT
keep_alive = "5s"

[uplink]
batch_interval = "1s"

$("$BIN/kilntally" simulate --listen "127.0.0.1:$SIM_PORT" --print-config)
CONF

echo "demo: broker 127.0.0.1:$BROKER_PORT, simulator 127.0.0.1:$SIM_PORT, config $WORK/kilntally.toml" >&2
echo "demo: what a hub subscriber to kilntally/# receives:" >&2
mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t 'kilntally/#' -q 1 -v &
SUB=$!
"$BIN/kilntallyd" --config "$WORK/kilntally.toml" --state-dir "$WORK/state" 2>"$WORK/kilntallyd.log" &
DAEMON=$!
PIDS=("$DAEMON" "$SUB" "$SIM" "$MOSQ")

if [[ -n "$DURATION" ]]; then
    end=$((SECONDS + ${DURATION%.*}))
    while ((SECONDS < end)); do
        if ! kill -0 "$DAEMON" 2>/dev/null; then
            echo "demo: kilntallyd exited early; its log:" >&2
            cat "$WORK/kilntallyd.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    # Stop the daemon and give the subscriber a moment to print the "offline" status.
    kill -TERM "$DAEMON"
    wait "$DAEMON" || { echo "demo: kilntallyd exited with $?; its log:" >&2; cat "$WORK/kilntallyd.log" >&2; exit 1; }
    sleep 0.5
    echo "demo: done after ${DURATION}s" >&2
else
    wait "$DAEMON"
fi
