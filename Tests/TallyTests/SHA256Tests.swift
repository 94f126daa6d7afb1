import KilnTallyCore
import Tally
import TestSupport
import Testing

@Suite("SHA-256")
struct SHA256Tests {
    /// FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf"): empty, one block, the 448-bit message
    /// that forces a second padding block, the 896-bit message, one million 'a'.
    @Test("NIST test vectors", arguments: [
        ("", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", 1,
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
        ("a", 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
    ])
    func nistVectors(text: String, repeats: Int, digest: String) {
        let message = Array(repeating: Array(text.utf8), count: repeats).flatMap { $0 }
        #expect(SHA256.hash(message).hex == digest)
        // The same message fed in odd-sized pieces (a partial block carried between updates).
        var h = SHA256()
        var rest = message[...]
        while !rest.isEmpty {
            let n = min(rest.count, 1 + (rest.count * 7 + 13) % 97)
            h.update(rest.prefix(n))
            rest = rest.dropFirst(n)
        }
        #expect(h.finalize().hex == digest)
        #expect(h.finalize().bytes.count == 32)
    }

    @Test func everySplitGivesTheSameDigest() {
        var rng = SplitMix64(seed: 256)
        let message = (0..<200).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let whole = SHA256.hash(message)
        for split in 0...message.count {
            var h = SHA256()
            h.update(message[..<split])
            let midway = h.finalize()  // finalize leaves the hasher as it was
            h.update(message[split...])
            #expect(h.finalize() == whole, "split at \(split)")
            #expect(midway == SHA256.hash(message[..<split]))
        }
    }

    /// Against Python's hashlib: every length through three blocks (all the padding cases: 55, 56, 63, 64, 119, 120…)
    /// and some long random messages.
    @Test func crossCheckedWithPythonHashlib() async throws {
        var rng = SplitMix64(seed: 180_4)
        var messages: [[UInt8]] = (0...192).map { n in (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        for _ in 0..<20 { messages.append((0..<Int.random(in: 193...20_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
        let python = try await JCSPeer.run("sha256", input: messages.map { Array($0.hex.utf8) })
        #expect(python.count == messages.count)
        for (n, message) in messages.enumerated() {
            #expect(SHA256.hash(message).hex == python[n], "message \(n) (\(message.count) bytes)")
        }
    }
}
