internal import CSysShims
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
        /// shutdown() was called: the loop drains what is queued (including jobs enqueued meanwhile), then exits.
        var stopping = false
        /// The loop thread has returned; from now on nothing else can be running jobs of this executor.
        var exited = false
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
        let queued = state.withLock { s -> Bool in
            if s.exited { return false }
            s.jobs.append(unowned)
            return true
        }
        if queued {
            available.signal()
        } else {
            // A job enqueued after the loop thread ended still has to run (an actor method awaiting it would hang
            // otherwise). It runs on the caller's thread; serial order still holds because the loop has exited
            // (checked under the lock above), so no other job of this executor can be running.
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
                guard s.head < s.jobs.count else {
                    // Only shutdown's signal arrives without a job; the queue is empty, so the loop may end.
                    if s.stopping { s.exited = true }
                    return nil
                }
                let job = s.jobs[s.head]
                s.head += 1
                if s.head > 64, s.head * 2 > s.jobs.count {
                    s.jobs.removeFirst(s.head)
                    s.head = 0
                }
                return job
            }
            guard let next else { return }
            next.runSynchronously(on: asUnownedSerialExecutor())
        }
    }

    /// Runs the jobs queued so far (and any enqueued while they run), then ends the thread. Jobs enqueued after
    /// the thread ended run inline on their caller.
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
