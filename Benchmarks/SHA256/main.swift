// SHA-256 throughput of Tally's pure-Swift implementation, for Benchmarks/sha256.sh (which compiles this file with
// Sources/Tally/SHA256.swift, optimized, and times sha256sum on the same file in the same run).
// Usage: sha256-benchmark FILE ROUNDS — hashes FILE's bytes ROUNDS times, prints the digest and MB/s.
#if canImport(Glibc)
import Glibc
#endif

@main
struct SHA256Benchmark {
    static func main() {
        let args = CommandLine.arguments
        guard args.count == 3, let rounds = Int(args[2]), let f = fopen(args[1], "rb") else {
            fputs("usage: sha256-benchmark FILE ROUNDS\n", stderr)
            exit(64)
        }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n == 0 { break }
            data.append(contentsOf: chunk[..<n])
        }
        fclose(f)
        var digest = ""
        let start = ContinuousClock.now
        for _ in 0..<rounds { digest = SHA256.hash(data).hex }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let mb = Double(data.count * rounds) / 1e6
        print("\(digest)  \(mb / seconds)")
    }
}
