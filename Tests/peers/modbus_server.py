#!/usr/bin/env python3
"""A Modbus server (slave) for the ModbusKit real-peer tests, built on pymodbus 3.16.

Usage:
    modbus_server.py (--tcp PORT [--host 127.0.0.1] | --rtu DEVICE [--baud 19200] [--parity N])
                     --unit N [--unit M ...] --map FILE [--delay-ms MS] [--log FILE] [--faults FILE]

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
size for all four tables and implements --delay-ms. Every --unit serves the same map; other unit ids are answered
with exception 4 (pymodbus' behaviour), unless a fault below says otherwise.

--log FILE appends one JSON line per request received, flushed as it arrives, before the request is answered:

    {"t": 12.345678, "wall": 1767225600.1, "conn": 1, "unit": 2, "fc": 3, "address": 0, "count": 4, "fault": null}

`t` is time.monotonic() (compare entries with each other only), `conn` numbers the client connections from 1,
`fault` is what the peer did instead of answering normally ("silent", "busy", "illegal_address", "drop",
"exception", or "illegal_function" for a function code pymodbus cannot decode), or null.

--faults FILE injects faults per unit id (counted over that unit's requests, from 1, across connections):

    {"9": {"silent": true},             # never answers: the client times out
     "2": {"busy_first": 3},            # requests 1-3 answered with exception 6 (server device busy)
     "3": {"illegal_addresses": [5]},   # a request covering address 5 (any table) gets exception 2
     "4": {"drop_after": 4},            # request 5 closes the connection without an answer (TCP; once)
     "5": {"exception": 11}}            # every request answered with this exception code (11: gateway target
                                        # failed to respond, as a TCP gateway says of a dead RTU slave)

A faulty unit need not be a --unit: a silent unit id 9 is a slave that is configured but dead.

Prints "modbus_server: serving ..." (flushed) once the port is listening or the serial device is open, and serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

from pymodbus import FramerType, pymodbus_apply_logging_config
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.transaction import TransactionManager

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
    # Each device gets its own copies: pymodbus' runtime keeps the lists it is given.
    tables = {name: list(values) for name, values in tables.items()}
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


class Peer:
    """The request log and the per-unit faults, shared by every connection of the server."""

    def __init__(self, log_path: str | None, faults: dict[int, dict]) -> None:
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.faults = faults
        self.requests_of_unit: dict[int, int] = {}
        self.dropped: set[int] = set()
        self.connections = 0

    def new_connection(self) -> int:
        self.connections += 1
        return self.connections

    def fault(self, unit: int, function_code: int, address: int | None, count: int | None) -> str | None:
        """Counts the request against its unit and says which fault (if any) answers it."""
        n = self.requests_of_unit.get(unit, 0) + 1
        self.requests_of_unit[unit] = n
        spec = self.faults.get(unit, {})
        if spec.get("silent"):
            return "silent"
        drop_after = spec.get("drop_after")
        if drop_after is not None and n > drop_after and unit not in self.dropped:
            self.dropped.add(unit)
            return "drop"
        if "exception" in spec:
            return "exception"
        if n <= spec.get("busy_first", 0):
            return "busy"
        if address is not None and count is not None and any(
                address <= a < address + count for a in spec.get("illegal_addresses", [])):
            return "illegal_address"
        return None

    def log(self, conn: int, unit: int, function_code: int, address: int | None, count: int | None,
            fault: str | None) -> None:
        if self.log_file is None:
            return
        entry = {"t": time.monotonic(), "wall": time.time(), "conn": conn, "unit": unit, "fc": function_code,
                 "address": address, "count": count, "fault": fault}
        self.log_file.write(json.dumps(entry) + "\n")
        self.log_file.flush()


class LoggingFaultyHandler(ServerRequestHandler):
    """pymodbus' per-connection request handler, with every request logged and faults injected before it is answered.

    Replaces ServerRequestHandler.callback_data/handle_request: those answer `self.last_pdu` after an await, by which
    time the next request may have replaced it; here each answer is bound to its own request.
    """

    def __init__(self, server, peer: Peer) -> None:
        super().__init__(server, server.trace_packet, server.trace_pdu, server.trace_connect)
        self.peer = peer
        self.conn = peer.new_connection()
        self.pending: set[asyncio.Task] = set()

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        try:
            used_len = TransactionManager.callback_data(self, data, addr)
        except ModbusIOException as exc:
            function_code = 0x00 if exc.fcode is None else exc.fcode
            self.peer.log(self.conn, exc.dev_id, function_code, None, None, "illegal_function")
            self.server_send(ExceptionResponse(function_code, exception_code=ExcCodes.ILLEGAL_FUNCTION,
                                               device_id=exc.dev_id, transaction=exc.transaction_id), addr)
            return len(data)
        pdu = self.last_pdu
        if pdu:
            address, count = getattr(pdu, "address", None), getattr(pdu, "count", None)
            fault = self.peer.fault(pdu.dev_id, pdu.function_code, address, count)
            self.peer.log(self.conn, pdu.dev_id, pdu.function_code, address, count, fault)
            task = self.loop.create_task(self.answer(pdu, addr, fault))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
        return used_len

    async def answer(self, pdu, addr, fault: str | None) -> None:
        if fault == "silent":
            return
        if fault == "drop":
            self.close()
            return
        if fault in ("busy", "illegal_address", "exception"):
            code = {"busy": ExcCodes.DEVICE_BUSY, "illegal_address": ExcCodes.ILLEGAL_ADDRESS,
                    "exception": self.peer.faults.get(pdu.dev_id, {}).get("exception")}[fault]
            self.server_send(ExceptionResponse(pdu.function_code, exception_code=code, device_id=pdu.dev_id,
                                               transaction=pdu.transaction_id), addr)
            return
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except Exception:  # pylint: disable=broad-except
            # An unknown unit id (pymodbus' SimCore raises KeyError): exception 4, as pymodbus itself answers.
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        self.server_send(response, addr)


def load_faults(path: str | None) -> dict[int, dict]:
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    known = {"silent", "busy_first", "illegal_addresses", "drop_after", "exception"}
    for unit, faults in spec.items():
        if set(faults) - known:
            sys.exit(f"modbus_server: unknown faults {sorted(set(faults) - known)} for unit {unit}")
    return {int(unit): faults for unit, faults in spec.items()}


async def serve(args: argparse.Namespace) -> None:
    size, tables = load_map(args.map)
    units = args.unit or [1]
    devices = [build_device(unit, tables) for unit in units]
    if args.tcp is not None:
        # --tcp-framer rtu: raw RTU frames (unit id, PDU, CRC) over TCP, as a serial device server in "TCP server"
        # mode carries them; libmodbus has no client for that, which is what the socat pty recipe is for.
        framer = FramerType.RTU if args.tcp_framer == "rtu" else FramerType.SOCKET
        server = ModbusTcpServer(devices, framer=framer, address=(args.host, args.tcp))
        where = f"tcp {args.host}:{args.tcp}" + (" (RTU framing)" if args.tcp_framer == "rtu" else "")
    else:
        server = ModbusSerialServer(
            devices, framer=FramerType.RTU, port=args.rtu, baudrate=args.baud, parity=args.parity,
            bytesize=8, stopbits=1)
        where = f"rtu {args.rtu}@{args.baud},8{args.parity}1"

    enforce_size_and_delay(server, size, args.delay_ms / 1000.0)
    peer = Peer(args.log, load_faults(args.faults))
    server.callback_new_connection = lambda: LoggingFaultyHandler(server, peer)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await server.serve_forever(background=True)  # raises if it cannot listen / open the device
    print(f"modbus_server: serving {where} unit {','.join(map(str, units))} size {size}"
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
    parser.add_argument("--tcp-framer", default="socket", choices=["socket", "rtu"],
                        help="with --tcp: Modbus TCP (MBAP, the default) or RTU frames over TCP")
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--parity", default="N", choices=["N", "E", "O"])
    parser.add_argument("--unit", type=int, action="append", help="a unit id served with the map (repeatable)")
    parser.add_argument("--map", required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--log", metavar="FILE", help="append a JSON line per request received")
    parser.add_argument("--faults", metavar="FILE", help="JSON: faults per unit id")
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
