internal import CModbus
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A view of a `ModbusTCPServer`'s register mapping, handed to `ModbusTCPServer.update` while the server holds the
/// mapping lock. It is `~Copyable` (and so are its tables), so it cannot be kept or copied out of the closure: the
/// memory it points to is only safe to touch under that lock.
///
/// Indexes are Modbus addresses starting at 0; an index outside a table traps (a programming error).
public struct ModbusRegisterMap: ~Copyable {
    /// Coils or discrete inputs.
    public struct Bits: ~Copyable {
        let base: UnsafeMutablePointer<UInt8>?
        public let count: Int

        public subscript(index: Int) -> Bool {
            get {
                precondition(index >= 0 && index < count, "bit address \(index) outside 0..<\(count)")
                return base![index] != 0
            }
            nonmutating set {
                precondition(index >= 0 && index < count, "bit address \(index) outside 0..<\(count)")
                base![index] = newValue ? 1 : 0
            }
        }

        public subscript(range: Range<Int>) -> [Bool] {
            get {
                precondition(range.lowerBound >= 0 && range.upperBound <= count, "bit range \(range) outside 0..<\(count)")
                return range.map { base![$0] != 0 }
            }
            nonmutating set {
                precondition(
                    range.lowerBound >= 0 && range.upperBound <= count && newValue.count == range.count,
                    "cannot set \(newValue.count) bits at \(range) in 0..<\(count)")
                for (offset, value) in newValue.enumerated() { base![range.lowerBound + offset] = value ? 1 : 0 }
            }
        }
    }

    /// Holding or input registers.
    public struct Registers: ~Copyable {
        let base: UnsafeMutablePointer<UInt16>?
        public let count: Int

        public subscript(index: Int) -> UInt16 {
            get {
                precondition(index >= 0 && index < count, "register address \(index) outside 0..<\(count)")
                return base![index]
            }
            nonmutating set {
                precondition(index >= 0 && index < count, "register address \(index) outside 0..<\(count)")
                base![index] = newValue
            }
        }

        /// Several consecutive registers, e.g. the two words of a 32-bit value.
        public subscript(range: Range<Int>) -> [UInt16] {
            get {
                precondition(range.lowerBound >= 0 && range.upperBound <= count, "register range \(range) outside 0..<\(count)")
                return Array(UnsafeBufferPointer(start: base! + range.lowerBound, count: range.count))
            }
            nonmutating set {
                precondition(
                    range.lowerBound >= 0 && range.upperBound <= count && newValue.count == range.count,
                    "cannot set \(newValue.count) registers at \(range) in 0..<\(count)")
                for (offset, value) in newValue.enumerated() { base![range.lowerBound + offset] = value }
            }
        }
    }

    public let coils: Bits
    public let discreteInputs: Bits
    public let holdingRegisters: Registers
    public let inputRegisters: Registers

    init(_ mapping: UnsafeMutablePointer<modbus_mapping_t>) {
        let m = mapping.pointee
        coils = Bits(base: m.tab_bits, count: Int(m.nb_bits))
        discreteInputs = Bits(base: m.tab_input_bits, count: Int(m.nb_input_bits))
        holdingRegisters = Registers(base: m.tab_registers, count: Int(m.nb_registers))
        inputRegisters = Registers(base: m.tab_input_registers, count: Int(m.nb_input_registers))
    }

    /// Present so the map cannot be taken apart (partially consumed) to smuggle a table out of `update`.
    deinit {}
}

/// libmodbus' server side, for the simulator: Modbus TCP on `host:port`, any number of clients (a poll loop) on one
/// dedicated thread. Requests are answered by `modbus_reply` from one register mapping (so client writes change it —
/// this is the simulator, not a plant device); any unit id is answered. With a `lineSpeed`, each reply waits out the
/// wire time of the same transaction on an RTU line (a device behind a serial gateway); the serving thread answers
/// one request at a time, as such a gateway would.
///
/// `start()`, `stop()`, `update`, `requestCount` and `requestLog` are `ModbusServer`'s.
public final class ModbusTCPServer: ModbusServer {
    public typealias RegisterCounts = ModbusRegisterCounts

    public let host: String
    public let core: ModbusServerCore

    /// Creates the libmodbus context (`modbus_new_tcp`) and the register mapping (`modbus_mapping_new`, all zero);
    /// nothing listens until `start()` (`modbus_tcp_listen`). `host` must be an IPv4 address ("127.0.0.1", "0.0.0.0"
    /// for all); `port` 0 picks a free port at `start()`.
    public init(
        host: String, port: Int, counts: RegisterCounts, lineSpeed: LineSpeed? = nil, logger: Logger
    ) throws(ModbusError) {
        self.host = host
        core = try ModbusServerCore.makeTCP(host: host, port: port, counts: counts, lineSpeed: lineSpeed, logger: logger)
    }

    deinit {
        stop()
    }

    /// The bound port (after `start()`; before, the port asked for).
    public var port: Int { core.boundPort.load(ordering: .acquiring) }
}
