import KilnTallyCore
#if canImport(Glibc)
import Glibc
#endif

/// A failed file operation of the store: names the call, the path and errno.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var path: String
    public var errno: Int32
    public var detail: String?

    public init(call: String, path: String, errno: Int32, detail: String? = nil) {
        self.call = call
        self.path = path
        self.errno = errno
        self.detail = detail
    }

    public var isDiskFull: Bool { errno == ENOSPC || errno == EDQUOT }

    public var description: String {
        var s = "store: \(call)(\(path)) failed"
        if errno != 0 { s += ": \(String(cString: strerror(errno))) (errno \(errno))" }
        if let detail { s += ": \(detail)" }
        return s
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE(_ v: UInt64) { for i in 0..<8 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func appendLE(_ v: UInt32) { for i in 0..<4 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func appendVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        append(UInt8(v))
    }
    mutating func appendString(_ s: String) {
        appendVarint(UInt64(s.utf8.count))
        append(contentsOf: s.utf8)
    }
}

struct ByteReader {
    var bytes: ArraySlice<UInt8>
    init(_ b: ArraySlice<UInt8>) { bytes = b }
    mutating func u8() -> UInt8? { bytes.popFirst() }
    mutating func u32() -> UInt32? {
        guard bytes.count >= 4 else { return nil }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[bytes.startIndex + i]) << (8 * UInt32(i)) }
        bytes = bytes.dropFirst(4)
        return v
    }
    mutating func u64() -> UInt64? {
        guard bytes.count >= 8 else { return nil }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[bytes.startIndex + i]) << (8 * UInt64(i)) }
        bytes = bytes.dropFirst(8)
        return v
    }
    mutating func varint() -> UInt64? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while let b = bytes.popFirst() {
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }
    mutating func string() -> String? {
        guard let n = varint(), n <= UInt64(bytes.count) else { return nil }
        let s = String(decoding: bytes.prefix(Int(n)), as: UTF8.self)
        bytes = bytes.dropFirst(Int(n))
        return s
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE16(_ v: UInt16) { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// The stable on-disk codes of `Quality` (never renumber: stored data depends on them).
enum QualityCode {
    static func code(_ q: Quality) -> UInt8 {
        switch q {
        case .good: 0
        case .invalid: 1
        case .commFailure: 2
        case .deviceFault: 3
        case .manual: 4
        case .timeout: 5
        case .stale: 6
        }
    }

    static func quality(_ c: UInt8) -> Quality? {
        switch c {
        case 0: .good
        case 1: .invalid
        case 2: .commFailure
        case 3: .deviceFault
        case 4: .manual
        case 5: .timeout
        case 6: .stale
        default: nil
        }
    }
}
