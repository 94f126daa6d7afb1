#!/usr/bin/env bash
# Installs everything kilntally needs to build and test on a fresh Debian 12 machine. Idempotent: a second run
# installs nothing and takes a second or two.
#   - Debian packages: the two C libraries (headers + pkg-config files), the mosquitto broker and clients used as
#     test peers, socat for RTU pty pairs, python3-venv for the Python peers, tzdata for the shift calendar's
#     IANA time zones; for the Debian package and its tests: dpkg-dev (dpkg-shlibdeps computes Depends:), systemd
#     (systemd-analyze verify/security, systemd-sysusers, systemd-tmpfiles; PID 1 need not be systemd) and strace
#     (the system calls kilntallyd makes, checked against the unit's SystemCallFilter=).
#   - A project virtual environment .venv/ with pymodbus (Modbus TCP/RTU server peer), paho-mqtt (hub subscriber
#     peer), jsonschema with rfc3339-validator (payload validation in tests, "date-time" checked), pyyaml (reads the
#     AsyncAPI document) and rfc8785 (an independent JCS canonicalizer that tests recompute the ledger's hash chain
#     with), prometheus-client (its parser checks the metrics text in tests).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libmodbus-dev libmosquitto-dev mosquitto mosquitto-clients socat python3-venv pkg-config tzdata
              dpkg-dev systemd strace)
PIP_PACKAGES=("pymodbus[serial]==3.*" "paho-mqtt==2.*" "jsonschema" "rfc3339-validator" "pyyaml" "rfc8785" "prometheus-client")

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's python3 (not a pyenv shim) makes the venv, so the interpreter in .venv/bin is a real binary whose PID
# the test harness can kill.
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
    echo "setup: creating .venv"
    rm -rf .venv
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import pymodbus, serial, paho.mqtt, jsonschema, rfc3339_validator, yaml, rfc8785, prometheus_client' 2>/dev/null; then
    echo "setup: installing Python test peers into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi
echo "setup: ok ($(pkg-config --modversion libmodbus) libmodbus, $(pkg-config --modversion libmosquitto) libmosquitto, pymodbus $(.venv/bin/python -c 'import pymodbus; print(pymodbus.__version__)'))"
