#!/usr/bin/env bash
# The README's test command: installs what is missing (idempotently), builds, and runs every test against the
# real peers (pymodbus over TCP and RTU/socat, mosquitto, mosquitto_sub).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
start=$SECONDS
swift build
echo "test: build took $((SECONDS - start))s"
start=$SECONDS
swift test --disable-xctest "$@"
echo "test: tests took $((SECONDS - start))s"
