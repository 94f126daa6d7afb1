import CSysShims
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `SerialExecutor` that runs every job on one dedicated OS thread it owns.
///
/// Actors whose methods make blocking system calls (fsync, file reads) use it as their executor, so those calls
/// never occupy a thread of Swift's cooperative pool:
///
/// ```swift
/// actor Store {
///     let executor = ThreadExecutor(name: "store")
///     nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
/// }
/// ```
public final class ThreadExecutor: SerialExecutor {
    private struct State {
        var jobs: [UnownedJob] = []
        var head = 0
        var stopping = false
        var thread: pthread_t?
    }

    private let state = Mutex(State())
    /// Counts queued jobs plus one signal for shutdown; the loop thread waits on it.
    private let available = DispatchSemaphore(value: 0)
    public let name: String

    public init(name: String) {
        self.name = name
        let box = Unmanaged.passRetained(self)
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let executor = Unmanaged<ThreadExecutor>.fromOpaque(arg!).takeRetainedValue()
            executor.runLoop()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create failed for executor \(name): \(rc)")
        state.withLock { $0.thread = tid }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let accepted = state.withLock { s -> Bool in
            if s.stopping { return false }
            s.jobs.append(unowned)
            return true
        }
        if accepted {
            available.signal()
        } else {
            // A job enqueued after shutdown still has to run (an actor method awaiting it would hang otherwise);
            // it runs on the caller's thread, which is safe because the loop thread has ended.
            unowned.runSynchronously(on: asUnownedSerialExecutor())
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    private func runLoop() {
        name.withCString { kt_set_thread_name($0) }
        while true {
            available.wait()
            let next = state.withLock { s -> UnownedJob? in
                guard s.head < s.jobs.count else { return nil }
                let job = s.jobs[s.head]
                s.head += 1
                if s.head > 64, s.head * 2 > s.jobs.count {
                    s.jobs.removeFirst(s.head)
                    s.head = 0
                }
                return job
            }
            if let next {
                next.runSynchronously(on: asUnownedSerialExecutor())
            } else {
                // Only the shutdown signal arrives without a job.
                return
            }
        }
    }

    /// Runs the jobs already queued, then ends the thread. Later jobs run inline on their caller.
    public func shutdown() {
        let tid = state.withLock { s -> pthread_t? in
            if s.stopping { return nil }
            s.stopping = true
            return s.thread
        }
        guard let tid else { return }
        available.signal()
        if pthread_equal(tid, pthread_self()) == 0 { pthread_join(tid, nil) } else { pthread_detach(tid) }
    }
}
