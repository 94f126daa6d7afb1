internal import CSysShims
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One dedicated OS thread that runs blocking jobs serially, in submission order — never on Swift's cooperative pool.
///
/// The queue is a `Mutex`-protected array; a counting semaphore (one `signal` per enqueued item) wakes the thread,
/// playing the role of the condition variable. Every submitted job ends exactly once: it either runs on the thread,
/// or, if the executor shuts down first, its `cancel` runs on the thread that called `shutdown`.
final class BlockingExecutor: Sendable {
    struct Job: Sendable {
        var run: @Sendable () -> Void
        var cancel: @Sendable () -> Void
    }

    fileprivate enum Item: Sendable {
        case job(Job)
        case stop
    }

    fileprivate struct State {
        var queue: [Item] = []
        var head = 0
        var accepting = true

        mutating func popFirst() -> Item? {
            guard head < queue.count else { return nil }
            let item = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            return item
        }
    }

    /// Shared by the executor (producer side) and its thread (consumer side). The thread holds only this, never the
    /// executor, so dropping the last reference to the executor shuts the thread down.
    fileprivate final class Shared: Sendable {
        let state = Mutex(State())
        let wakeup = DispatchSemaphore(value: 0)
        let name: String
        init(name: String) { self.name = name }
    }

    private let shared: Shared
    private let thread: pthread_t
    var name: String { shared.name }

    /// Starts the thread now. `name` is shortened to the 15 bytes Linux keeps for a thread name.
    init(name: String) {
        shared = Shared(name: name)
        var tid = pthread_t()
        let context = Unmanaged.passRetained(shared).toOpaque()
        let rc = pthread_create(&tid, nil, blockingExecutorThreadMain, context)
        precondition(rc == 0, "pthread_create failed for executor '\(name)': errno \(rc)")
        thread = tid
    }

    /// Whether the caller runs on this executor's thread.
    var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Queues `job`; returns false (without running it) when the executor is shutting down.
    private func enqueue(_ job: Job) -> Bool {
        let accepted = shared.state.withLock { state -> Bool in
            guard state.accepting else { return false }
            state.queue.append(.job(job))
            return true
        }
        if accepted { shared.wakeup.signal() }
        return accepted
    }

    /// Queues `body` to run on the executor thread without waiting for it; returns false (and drops `body`) when
    /// the executor is shutting down.
    @discardableResult
    func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        enqueue(Job(run: body, cancel: {}))
    }

    /// Runs `body` on the executor thread and returns its result; if the executor is (or goes) down before `body`
    /// runs, returns `.failure(cancelled())`.
    func run<T: Sendable>(
        _ body: @escaping @Sendable () -> Result<T, ModbusError>,
        cancelled: @escaping @Sendable () -> ModbusError
    ) async -> Result<T, ModbusError> {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, ModbusError>, Never>) in
            let job = Job(
                run: { continuation.resume(returning: body()) },
                cancel: { continuation.resume(returning: .failure(cancelled())) })
            if !enqueue(job) { job.cancel() }
        }
    }

    /// Stops accepting jobs, cancels the queued ones, runs `final` on the thread after the job in progress (if any),
    /// and ends the thread. Returns false if shutdown already happened. Blocks until the thread has ended (at most
    /// the job in progress plus `final`), unless called from the executor thread itself: then the thread is
    /// detached and ends right after the current job.
    @discardableResult
    func shutdown(final: @escaping @Sendable () -> Void) -> Bool {
        let pending = shared.state.withLock { state -> [Item]? in
            guard state.accepting else { return nil }
            state.accepting = false
            let pending = Array(state.queue[state.head...])
            state.queue = [.job(Job(run: final, cancel: final)), .stop]
            state.head = 0
            return pending
        }
        guard let pending else { return false }
        for case .job(let job) in pending { job.cancel() }
        shared.wakeup.signal()
        shared.wakeup.signal()
        if isCurrent {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
        return true
    }

    deinit {
        shutdown(final: {})
    }

    /// The thread's loop: wait for a signal, pop one item, run it; `.stop` ends the loop. A wakeup for an item that
    /// shutdown removed from the queue finds nothing and waits again.
    fileprivate static func serve(_ shared: Shared) {
        // Names the OS thread (Linux keeps 15 bytes), so `top -H` and debuggers show which bus it serves.
        // pthread_setname_np is a GNU extension Swift's Glibc module does not export; CSysShims wraps it.
        shared.name.withCString { kt_set_thread_name($0) }
        while true {
            shared.wakeup.wait()
            let item = shared.state.withLock { $0.popFirst() }
            switch item {
            case .none: continue
            case .job(let job)?: job.run()
            case .stop?: return
            }
        }
    }
}

/// pthread entry point: a top-level function matching `void *(*)(void *)`; the context is the retained `Shared`.
private func blockingExecutorThreadMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let shared = Unmanaged<BlockingExecutor.Shared>.fromOpaque(context!).takeRetainedValue()
    BlockingExecutor.serve(shared)
    return nil
}
