// Appends sample readings to a ring store as fast as group commit allows and prints "durable N" (flushed) each
// time readings up to N are reported durable. The crash-loop test kills this process with SIGKILL at random.
import KilnTallyCore
import Logging
import RingStore
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

let parent = getppid()
let directory = CommandLine.arguments[1]
var logger = Logger(label: "crash-writer")
// Warnings too: what its own recovery did at open (a torn tail cut, anything quarantined) is in its log, which the
// test shows when an iteration fails.
logger.logLevel = .warning
var options = RingStore.Options(maxBytes: 1 << 30)
options.segmentBytes = 64 << 10
options.syncInterval = .milliseconds(5)
let store = try await RingStore(directory: directory, options: options, logger: logger)
let runner = Task { await store.run() }
var batch: UInt64 = 1
// A crashed test run must not leave writers behind: stop once orphaned.
while getppid() == parent {
    let next = store.lastDurableSequence + 1
    let n = batch % 50 + 1
    // Only this process submits, so the numbers handed out are next..<next+n.
    guard let range = store.submit((0..<n).map { sampleReading(next + $0) }) else { break }
    precondition(range.lowerBound == next, "unexpected numbering")
    try await store.waitUntilDurable(range.upperBound)
    print("durable \(range.upperBound)")
    fflush(nil)
    batch += 1
}
runner.cancel()
