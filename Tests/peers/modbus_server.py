#!/usr/bin/env python3
"""A Modbus server (slave) for the ModbusKit real-peer tests, built on pymodbus 3.16.

Usage:
    modbus_server.py (--tcp PORT [--host 127.0.0.1] | --rtu DEVICE [--baud 19200] [--parity N])
                     --unit N --map FILE [--delay-ms MS]

The map file is JSON:

    {
      "size": 64,                      # addresses 0..size-1 exist in every table; others give exception 2
      "coils":    [true, false, ...],  # values from address 0, padded with false/0 up to size
      "discrete": [false, true, ...],
      "holding":  [1, 2, 3, ...],
      "input":    [100, 200, ...],
      "typed": [                       # optional: 32-bit values encoded by pymodbus itself
        {"table": "holding", "address": 10, "type": "float32", "value": 3.5, "word_order": "ABCD"},
        {"table": "input",   "address": 20, "type": "uint32",  "value": 70000, "word_order": "CDAB"}
      ]
    }

pymodbus 3.16 deprecates ModbusDeviceContext/ModbusServerContext in favour of SimData/SimDevice; this uses the
new API with four separate blocks (coils, discrete inputs, holding registers, input registers). Its own range check
works in 16-bit steps for coils and discrete inputs, so a wrapper around the server's datastore enforces the exact
size for all four tables and implements --delay-ms. Unit ids other than --unit are answered with exception 4 (pymodbus' behaviour).

Prints "modbus_server: serving ..." (flushed) once the port is listening or the serial device is open, and serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from pymodbus import FramerType, pymodbus_apply_logging_config
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# function code -> table
_TABLE_OF_FC = {1: "coils", 5: "coils", 15: "coils", 2: "discrete",
                3: "holding", 6: "holding", 16: "holding", 22: "holding", 23: "holding", 4: "input"}
_TYPES = {"float32": ModbusClientMixin.DATATYPE.FLOAT32, "uint32": ModbusClientMixin.DATATYPE.UINT32,
          "int32": ModbusClientMixin.DATATYPE.INT32, "float64": ModbusClientMixin.DATATYPE.FLOAT64,
          "uint64": ModbusClientMixin.DATATYPE.UINT64, "int16": ModbusClientMixin.DATATYPE.INT16}
_WORD_ORDERS = {"ABCD": "big", "CDAB": "little"}


def load_map(path: str) -> tuple[int, dict[str, list]]:
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    lengths = [len(spec.get(k, [])) for k in ("coils", "discrete", "holding", "input")]
    size = int(spec.get("size", max(lengths + [1])))
    if size < 1 or size > 65536 or max(lengths) > size:
        sys.exit(f"modbus_server: bad size {size} for map with table lengths {lengths}")
    tables: dict[str, list] = {
        "coils": [bool(v) for v in spec.get("coils", [])] + [False] * (size - lengths[0]),
        "discrete": [bool(v) for v in spec.get("discrete", [])] + [False] * (size - lengths[1]),
        "holding": [int(v) & 0xFFFF for v in spec.get("holding", [])] + [0] * (size - lengths[2]),
        "input": [int(v) & 0xFFFF for v in spec.get("input", [])] + [0] * (size - lengths[3]),
    }
    for entry in spec.get("typed", []):
        table, address = entry["table"], int(entry["address"])
        if table not in ("holding", "input"):
            sys.exit(f"modbus_server: typed values only go into holding/input, not {table}")
        regs = ModbusClientMixin.convert_to_registers(
            entry["value"], _TYPES[entry["type"]], word_order=_WORD_ORDERS[entry.get("word_order", "ABCD")])
        if address + len(regs) > size:
            sys.exit(f"modbus_server: typed value at {address} does not fit in size {size}")
        tables[table][address:address + len(regs)] = regs
    return size, tables


def build_device(unit: int, tables: dict[str, list]) -> SimDevice:
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, values=tables["coils"], datatype=DataType.BITS)],
            [SimData(0, values=tables["discrete"], datatype=DataType.BITS)],
            [SimData(0, values=tables["holding"], datatype=DataType.REGISTERS)],
            [SimData(0, values=tables["input"], datatype=DataType.REGISTERS)],
        ),
    )


def enforce_size_and_delay(server, size: int, delay: float) -> None:
    """Wraps the server's datastore (a pymodbus SimCore) so every table ends exactly at `size`.

    pymodbus checks coil/discrete ranges only to the enclosing 16-bit word, and a SimDevice `action` is handed the
    count in registers, not bits, so the exact check has to sit where the request's own address and count arrive.
    """
    core = server.context
    get_values, set_values = core.async_getValues, core.async_setValues

    def known(device_id) -> bool:
        # Unknown unit ids go straight to pymodbus, which answers them with exception 4.
        return device_id in core.devices or 0 in core.devices

    async def checked_get(device_id, func_code, address, count=1):
        if known(device_id) and func_code in _TABLE_OF_FC and address + count > size:
            return ExcCodes.ILLEGAL_ADDRESS
        if delay > 0:
            await asyncio.sleep(delay)
        return await get_values(device_id, func_code, address, count)

    async def checked_set(device_id, func_code, address, values):
        if known(device_id) and func_code in _TABLE_OF_FC and address + len(values) > size:
            return ExcCodes.ILLEGAL_ADDRESS
        if delay > 0:
            await asyncio.sleep(delay)
        return await set_values(device_id, func_code, address, values)

    core.async_getValues = checked_get
    core.async_setValues = checked_set


async def serve(args: argparse.Namespace) -> None:
    size, tables = load_map(args.map)
    device = build_device(args.unit, tables)
    if args.tcp is not None:
        server = ModbusTcpServer(device, framer=FramerType.SOCKET, address=(args.host, args.tcp))
        where = f"tcp {args.host}:{args.tcp}"
    else:
        server = ModbusSerialServer(
            device, framer=FramerType.RTU, port=args.rtu, baudrate=args.baud, parity=args.parity,
            bytesize=8, stopbits=1)
        where = f"rtu {args.rtu}@{args.baud},8{args.parity}1"

    enforce_size_and_delay(server, size, args.delay_ms / 1000.0)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await server.serve_forever(background=True)  # raises if it cannot listen / open the device
    print(f"modbus_server: serving {where} unit {args.unit} size {size}"
          f"{' delay ' + str(args.delay_ms) + 'ms' if args.delay_ms else ''}", flush=True)
    await stop.wait()
    await server.shutdown()
    print("modbus_server: stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT")
    where.add_argument("--rtu", metavar="DEVICE")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--parity", default="N", choices=["N", "E", "O"])
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--map", required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    # A parent may start us with SIGTERM blocked (swift-corelibs-foundation's Process passes on the spawning
    # thread's signal mask); unblock so a plain SIGTERM stops the server gracefully.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    import logging
    pymodbus_apply_logging_config(logging.DEBUG if args.debug else logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
