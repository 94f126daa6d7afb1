import Foundation
import KilnTallyCore
import Logging
import ModbusKit
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The per-bus scheduler: polls every device of one bus in turn, on the bus' own `ModbusClient` (whose blocking calls
/// run on its own thread, never on the cooperative pool), one request at a time with the bus' pause between them.
///
/// - A device that does not answer is probed with exponential backoff (2, 4, 8 … poll intervals up to its
///   `backoffMax`), so it costs at most one timeout per probe and its neighbours keep their cadence. Its readings
///   come out with quality `comm_failure` (the gap stays visible downstream), with one `device_down` event, and one
///   `device_up` when it answers again. "Not answering" means silence: a timeout, or a gateway's exception 10/11
///   for the slave behind it. Any other answer, an exception included, is an answer: that is a channel's problem.
///   A probe goes right after an answered poll of an up device, where its timeout delays the next poll least.
/// - A timed-out request is retried `retries` times while the device is up, each retry at the device's next turn
///   (devices already due go first). A device that is down gets one request per backoff interval and no retries.
/// - An exception 6 (busy) answer is sent again after 1/8, 1/4 and 1/2 of the response timeout.
/// - A connection that breaks under a request is re-opened and the request sent once more (a bus matter, not the
///   device's). When the bus cannot be opened at all, its devices are not polled; it is tried again with
///   exponential backoff up to `reconnectBackoffMax`, and the outage is one `bus_down` and one `bus_up` event.
/// - Other callers (the probe, through the daemon) run single reads with `read(unit:table:address:count:)`, in
///   turn between device polls.
public final class BusPoller: Sendable {
    public let bus: BusConfig
    public let devices: [DeviceConfig]
    private let client: ModbusClient
    private let clock: any WallClock
    private let logger: Logger
    /// The first wait before re-opening a bus that cannot be opened: its fastest device's poll interval (doubled
    /// from there, as a dead device's probes are).
    private let reconnectBase: Duration

    public init(bus: BusConfig, devices: [DeviceConfig], clock: any WallClock, logger: Logger) throws(ModbusError) {
        self.bus = bus
        self.devices = devices
        self.clock = clock
        var logger = logger
        logger[metadataKey: "bus"] = "\(bus.name)"
        self.logger = logger
        reconnectBase = devices.map(\.pollInterval).min() ?? .seconds(1)
        client = try ModbusClient(name: bus.name, transport: bus.transport, timeouts: bus.timeouts, logger: logger)
        statusBox = Mutex(Status(bus: bus.name, busError: nil, devices: devices.map {
            DeviceStatus(device: $0.id, up: true, failures: 0, polls: 0, errors: 0)
        }, lastProgress: .now))
        debugHang = ProcessInfo.processInfo.environment["KILNTALLY_DEBUG_HANG_BUS"] == bus.name
    }

    /// The wait before probing a device again after `failures` polls in a row failed: 2, 4, 8 … poll intervals,
    /// capped. Also the wait between attempts to re-open a bus, from its shortest poll interval.
    static func backoff(pollInterval: Duration, failures: Int, cap: Duration) -> Duration {
        guard failures > 0 else { return pollInterval }
        var d = pollInterval
        for _ in 0..<min(failures, 32) {
            d = d * 2
            if d >= cap { return cap }
        }
        return d
    }

    /// The waits before sending a request again that was answered with exception 6 (server device busy): 1/8, 1/4
    /// and 1/2 of the response timeout — less than one timeout together, so a busy device costs its neighbours no
    /// more than a silent one.
    static func busyWaits(responseTimeout: Duration) -> [Duration] {
        [responseTimeout / 8, responseTimeout / 4, responseTimeout / 2]
    }

    /// What the bus and its devices are doing, for `kilntally status` and the watchdog.
    public struct Status: Sendable {
        public var bus: String
        /// Nil while the bus can be used; why it cannot otherwise.
        public var busError: String?
        public var devices: [DeviceStatus]
        /// When the scheduler last finished a turn (a poll attempt, a reconnect attempt or an idle tick).
        public var lastProgress: ContinuousClock.Instant
    }

    public struct DeviceStatus: Sendable {
        public var device: DeviceID
        public var up: Bool
        /// Polls in a row that got no answer.
        public var failures: Int
        public var lastGoodRead: UTCInstant?
        public var lastError: String?
        /// How long the last answered poll took.
        public var lastLatency: Duration?
        /// While the device is down: the wait until its next probe.
        public var backoff: Duration?
        public var polls: Int
        public var errors: Int
    }

    public var status: Status { statusBox.withLock { $0 } }

    /// The longest the scheduler may go without finishing a turn while it is healthy: an idle tick
    /// (`livenessTick`), one request's response timeout and the bus pause, plus slack. Longer means its thread is
    /// stuck (a driver or libmodbus hung): the daemon stops its watchdog pings.
    public var livenessDeadline: Duration { Self.livenessTick + bus.timeouts.response * 2 + bus.pause + .seconds(5) }
    static let livenessTick: Duration = .seconds(5)

    private let statusBox: Mutex<Status>
    /// Debug fault hook (tests only): `KILNTALLY_DEBUG_HANG_BUS=<bus>` makes this bus's connection thread hang after
    /// its first answered poll, as a stuck driver would.
    private let debugHang: Bool

    private func noteProgress() { statusBox.withLock { $0.lastProgress = .now } }

    /// Attempts to re-open the bus made while it was down (for metrics and tests).
    public var reconnectAttempts: Int { reconnects.load(ordering: .relaxed) }
    private let reconnects = Atomic<Int>(0)

    /// Ends the bus connection's thread (the poller's `run` does this itself when it ends).
    func shutdownClient() { client.shutdown() }

    // MARK: the scheduler

    /// Where one device stands in the schedule.
    private struct DeviceState {
        /// When the device's next turn on the bus is due.
        var next: ContinuousClock.Instant
        /// When its current (or next) poll was scheduled; cadence is kept from here, not from retries.
        var slot: ContinuousClock.Instant
        var down = false
        /// Polls in a row that got no answer.
        var failures = 0
        /// A poll waiting for its next turn to retry a timed-out request.
        var pending: PollProgress?
        /// The device's `heartbeat` channel (index) and its watch, if it has one.
        var heartbeat: (channel: Int, watch: HeartbeatWatch)?
    }

    /// Whether the bus can be used, and if not, when to try again.
    private struct Link {
        var error: ModbusError?
        var failures = 0
        var nextAttempt = ContinuousClock.now
        var since = ContinuousClock.now
    }

    /// Polls until the task is cancelled. `deliver` receives each device's readings of one poll; `event` receives
    /// device down/up and bus down/up transitions.
    public func run(
        deliver: @Sendable ([Reading]) async -> Void,
        event: @Sendable (Event) async -> Void
    ) async {
        await schedule(deliver: deliver, event: event)
        for job in inbox.withLock({ $0.end() }) { job.continuation.resume(returning: .failure(stoppedError())) }
        // Closing first waits, without holding a thread of the cooperative pool, for a request still on the wire
        // (up to one response timeout); the executor is then idle, so shutting it down only joins its thread.
        await client.close()
        client.shutdown()
    }

    private func schedule(deliver: @Sendable ([Reading]) async -> Void, event: @Sendable (Event) async -> Void) async {
        let start = ContinuousClock.now
        var state = devices.map { device in
            var s = DeviceState(next: start, slot: start)
            if let i = device.channels.firstIndex(where: { if case .heartbeat = $0.role { true } else { false } }),
               case .heartbeat(let staleAfter)? = device.channels[i].role {
                s.heartbeat = (i, HeartbeatWatch(staleAfter: staleAfter))
            }
            return s
        }
        var link = Link()
        // Whether the last turn on the bus was a poll that got answers (so the bus is at the start of a quiet gap).
        var afterAnsweredPoll = false

        var hung = false
        while !Task.isCancelled {
            noteProgress()
            // Reads queued by other callers run first, one per turn, between device polls.
            if let job = inbox.withLock({ $0.take() }) {
                afterAnsweredPoll = false
                if let error = link.error {
                    job.continuation.resume(returning: .failure(error))
                    continue
                }
                do {
                    job.continuation.resume(returning: .success(try await send(job.request, unit: job.unit)))
                } catch {
                    job.continuation.resume(returning: .failure(error))
                    if error.isOpenFailure {
                        await busDown(error, &link, &state, failedPoll: nil, deliver: deliver, event: event)
                    }
                }
                continue
            }

            if link.error != nil {
                afterAnsweredPoll = false
                if link.nextAttempt > ContinuousClock.now {
                    await idle(until: link.nextAttempt)
                    continue
                }
                reconnects.add(1, ordering: .relaxed)
                do {
                    try await client.connect()
                    await busUp(&link, &state, event: event)
                } catch {
                    link.failures += 1
                    link.error = error
                    link.nextAttempt = ContinuousClock.now + Self.backoff(pollInterval: reconnectBase, failures: link.failures, cap: bus.reconnectBackoffMax)
                    logger.debug("bus \(bus.name) still cannot be opened: \(error.detail)", metadata: ["call": "\(error.call)"])
                }
                continue
            }

            // The device whose turn is soonest; a retry is due "now", behind neighbours that were due earlier.
            guard var i = state.indices.min(by: { state[$0].next < state[$1].next }) else {
                // No devices: serve callers' reads until cancelled.
                await idle(until: .now + .seconds(3600))
                continue
            }
            // A probe of a silent device will most likely cost a whole response timeout. Started at an arbitrary
            // moment it can land just before an up device is due and push that poll back by the whole timeout;
            // started right after an answered poll it delays the next one least. So unless the bus has just
            // served an answered poll, up devices due before the probe could end go first.
            if state[i].down, state[i].pending == nil, !afterAnsweredPoll,
               let j = state.indices.filter({ !state[$0].down }).min(by: { state[$0].next < state[$1].next }),
               state[j].next <= max(state[i].next, .now) + bus.timeouts.response + bus.pause {
                i = j
            }
            if state[i].next > ContinuousClock.now {
                afterAnsweredPoll = false
                await idle(until: state[i].next)
                continue
            }
            let device = devices[i]
            let probe = state[i].down
            let turnStarted = ContinuousClock.now
            var progress = state[i].pending ?? startPoll(device, index: i, down: state[i].down)
            let complete = await turn(device, index: i, &progress)
            afterAnsweredPoll = !probe && progress.answered
            if Task.isCancelled {
                // Stopped mid-poll: hand over what was read, and judge nothing from the requests not sent.
                if !progress.readings.isEmpty { await deliver(progress.readings) }
                break
            }
            if !complete {
                state[i].pending = progress
                state[i].next = ContinuousClock.now
                continue
            }
            state[i].pending = nil
            if let error = progress.openFailure {
                await busDown(error, &link, &state, failedPoll: (i, progress.readings), deliver: deliver, event: event)
                continue
            }
            let failure = progress.answered ? nil : progress.firstError
            let now = ContinuousClock.now
            let wall = clock.now()
            if failure != nil {
                state[i].failures += 1
                // Probe a silent device less and less often, so its timeouts do not eat its neighbours' cadence.
                state[i].slot = now + Self.backoff(pollInterval: device.pollInterval, failures: state[i].failures, cap: device.backoffMax)
            } else {
                state[i].failures = 0
                // Next poll one interval after the scheduled time, skipping missed slots instead of bursting.
                state[i].slot += device.pollInterval
                if state[i].slot < now { state[i].slot = now }
            }
            state[i].next = state[i].slot
            statusBox.withLock { st in
                st.devices[i].polls += 1
                st.devices[i].failures = state[i].failures
                if let failure {
                    st.devices[i].errors += 1
                    st.devices[i].lastError = "\(failure)"
                    st.devices[i].backoff = state[i].slot - now
                } else {
                    st.devices[i].lastGoodRead = wall
                    st.devices[i].lastLatency = now - turnStarted
                    st.devices[i].backoff = nil
                    if let e = progress.firstError { st.devices[i].lastError = "\(e)" }
                }
                st.devices[i].up = failure == nil
            }
            if debugHang, !hung, failure == nil {
                hung = true
                logger.critical("debug fault hook: bus \(bus.name)'s connection thread now hangs (KILNTALLY_DEBUG_HANG_BUS)")
                client.debugHang()
            }
            if let failure, !state[i].down {
                state[i].down = true
                await deviceDown(device, because: failure.detail, failure, event: event)
            } else if failure == nil, state[i].down {
                state[i].down = false
                logger.notice("device \(device.id) on bus \(bus.name) answers again", metadata: ["device": "\(device.id)"])
                await event(Event(kind: .deviceUp, severity: .info, time: clock.now(), device: device.id,
                                  message: "device \(device.id) on bus \(bus.name) answers again", attributes: ["bus": bus.name]))
            }
            var readings = progress.readings
            if let (channel, _) = state[i].heartbeat, let beat = progress.slots[channel] {
                if let transition = state[i].heartbeat!.watch.observe(beat, at: now) {
                    await heartbeat(transition, device, channel: channel, staleAfter: state[i].heartbeat!.watch.staleAfter, event: event)
                }
                if state[i].heartbeat!.watch.isStale { HeartbeatWatch.markStale(&readings) }
            }
            await deliver(readings)
        }
    }

    private func heartbeat(
        _ transition: HeartbeatWatch.Transition, _ device: DeviceConfig, channel: Int, staleAfter: Duration,
        event: @Sendable (Event) async -> Void
    ) async {
        let name = device.channels[channel].id
        switch transition {
        case .stopped:
            let message = "device \(device.id) on bus \(bus.name) answers, but its heartbeat \(name) has not changed for \(staleAfter): its readings are marked stale"
            logger.error("\(message)", metadata: ["device": "\(device.id)"])
            await event(Event(kind: .heartbeatStopped, severity: .alarm, time: clock.now(), device: device.id, message: message,
                              attributes: ["bus": bus.name, "channel": name.rawValue]))
        case .resumed:
            let message = "device \(device.id) on bus \(bus.name): heartbeat \(name) counts again"
            logger.notice("\(message)", metadata: ["device": "\(device.id)"])
            await event(Event(kind: .heartbeatResumed, severity: .info, time: clock.now(), device: device.id, message: message,
                              attributes: ["bus": bus.name, "channel": name.rawValue]))
        }
    }

    /// `why` does not name the bus (the message does): a `ModbusError`'s `detail`, not its description.
    private func deviceDown(_ device: DeviceConfig, because why: String, _ error: ModbusError, event: @Sendable (Event) async -> Void) async {
        logger.error("device \(device.id) on bus \(bus.name) (\(bus.transport.endpoint)) is not answering: \(why)",
                     metadata: ["device": "\(device.id)", "call": "\(error.call)"])
        await event(Event(kind: .deviceDown, severity: .alarm, time: clock.now(), device: device.id,
                          message: "device \(device.id) on bus \(bus.name) (\(bus.transport.endpoint)): \(why)",
                          attributes: ["bus": bus.name, "call": error.call, "errno": "\(error.errno)"]))
    }

    /// The bus cannot be opened: every device is unreachable until it can. Each device that was up goes down (one
    /// event, and one poll's worth of `comm_failure` readings so the gap shows, counted in `status` as a failed
    /// poll); polls in progress are dropped. Every device's last error is the bus's, so `status` says why each is down.
    private func busDown(
        _ error: ModbusError, _ link: inout Link, _ state: inout [DeviceState], failedPoll: (index: Int, readings: [Reading])?,
        deliver: @Sendable ([Reading]) async -> Void, event: @Sendable (Event) async -> Void
    ) async {
        link = Link(error: error, failures: 1,
                    nextAttempt: .now + Self.backoff(pollInterval: reconnectBase, failures: 1, cap: bus.reconnectBackoffMax),
                    since: .now)
        // The devices that get a failed poll's readings below: those that were up, and the one whose poll failed.
        let failedPolls = state.indices.filter { !state[$0].down || failedPoll?.index == $0 }
        statusBox.withLock { st in
            st.busError = "\(error)"
            for j in st.devices.indices {
                st.devices[j].up = false
                st.devices[j].lastError = "\(error)"
            }
            for j in failedPolls {
                st.devices[j].polls += 1
                st.devices[j].errors += 1
            }
        }
        logger.error("bus \(bus.name) (\(bus.transport.endpoint)) cannot be opened: \(error.detail); retrying with backoff up to \(bus.reconnectBackoffMax)",
                     metadata: ["call": "\(error.call)"])
        await event(Event(kind: .busDown, severity: .alarm, time: clock.now(),
                          message: "bus \(bus.name) (\(bus.transport.endpoint)) cannot be opened: \(error.detail)",
                          attributes: ["bus": bus.name, "call": error.call, "errno": "\(error.errno)"]))
        for j in state.indices {
            state[j].pending = nil
            let polled = failedPoll?.index == j
            if !state[j].down {
                state[j].down = true
                await deviceDown(devices[j], because: "the bus cannot be opened: \(error.detail)", error, event: event)
            } else if !polled {
                continue
            }
            let synced = clock.isSynchronized()
            await deliver(failedPoll.flatMap { polled ? $0.readings : nil }
                          ?? devices[j].channels.indices.map { failed(devices[j], $0, error, synced) })
        }
    }

    /// The bus is open again: devices that were answering before the outage are polled right away; devices that
    /// were already silent keep their backoff.
    private func busUp(_ link: inout Link, _ state: inout [DeviceState], event: @Sendable (Event) async -> Void) async {
        let outage = ContinuousClock.now - link.since
        logger.notice("bus \(bus.name) (\(bus.transport.endpoint)) is open again after \(outage)")
        await event(Event(kind: .busUp, severity: .info, time: clock.now(),
                          message: "bus \(bus.name) (\(bus.transport.endpoint)) is open again",
                          attributes: ["bus": bus.name, "attempts": "\(link.failures)"]))
        link = Link()
        statusBox.withLock { $0.busError = nil }
        let now = ContinuousClock.now
        for j in state.indices {
            if state[j].failures == 0 {
                state[j].slot = now
            }
            state[j].slot = max(state[j].slot, now)
            state[j].next = state[j].slot
        }
    }

    // MARK: one device's poll

    /// Channels whose registers the device refuses (exception 2), per device index: left out of the merged plan
    /// so the rest keep their single requests, and tried again now and then.
    private let refused = Mutex<[Int: [Int: ContinuousClock.Instant]]>([:])
    static let refusedRetryInterval: Duration = .seconds(60)

    /// A device's poll in progress: what is left of its plan and the readings so far. A poll spans several turns on
    /// the bus when a timed-out request waits for the device's next turn to be sent again.
    struct PollProgress: Sendable {
        var plan: [ReadRequest]
        /// The request to send next.
        var next = 0
        /// One slot per channel, so readings come out in the device's channel order whatever order the plan reads.
        var slots: [Reading?]
        var firstError: ModbusError?
        /// Whether anything the device was asked got an answer (data or an exception other than a gateway's).
        var answered = false
        /// Retries per timed-out request (none for a device that is down), and those left for `next`.
        let retries: Int
        var retriesLeft: Int
        /// Set when the bus could not be opened: the poll ended there.
        var openFailure: ModbusError?

        var readings: [Reading] { slots.compactMap { $0 } }
    }

    private func startPoll(_ device: DeviceConfig, index: Int, down: Bool) -> PollProgress {
        let now = ContinuousClock.now
        // Refused channels stay out of the merged plan; each is tried again on its own once per retry interval.
        let (resting, retrying) = refused.withLock { r -> (Set<Int>, [Int]) in
            let mine = r[index] ?? [:]
            return (Set(mine.filter { now - $0.value < Self.refusedRetryInterval }.keys),
                    mine.filter { now - $0.value >= Self.refusedRetryInterval }.keys.sorted())
        }
        let plan = mergedPlan(device, index: index, excluding: resting.union(retrying))
            + retrying.map { ReadRequest.single($0, of: device.channels) }
        let retries = down ? 0 : device.retries
        var progress = PollProgress(plan: plan, slots: .init(repeating: nil, count: device.channels.count),
                                    retries: retries, retriesLeft: retries)
        for i in resting { progress.slots[i] = failed(device, i, .deviceFault, clock.isSynchronized(), exception: 2) }
        return progress
    }

    /// Reads every channel of `device` once, with the merged request plan, retrying timed-out requests at once (no
    /// neighbours to give way to). Returns the readings (failed channels with quality `comm_failure` or
    /// `device_fault`) and the first error, if any.
    func poll(_ device: DeviceConfig, index: Int = 0, down: Bool = false) async -> ([Reading], ModbusError?) {
        var progress = startPoll(device, index: index, down: down)
        while !(await turn(device, index: index, &progress)) {}
        return (progress.readings, progress.firstError ?? progress.openFailure)
    }

    /// One turn of a device on the bus: sends the requests left in `p` until the poll is complete (true) or a
    /// timed-out request is to be sent again at the device's next turn (false).
    private func turn(_ device: DeviceConfig, index: Int, _ p: inout PollProgress) async -> Bool {
        while p.next < p.plan.count {
            if Task.isCancelled { return true }
            let request = p.plan[p.next]
            let synced = clock.isSynchronized()
            do {
                let words = try await send(request, unit: device.unitID)
                p.answered = true
                let time = clock.now()
                for i in request.channels { p.slots[i] = decode(device, i, words, request, time, synced) }
                if request.channels.count == 1 { refused.withLock { _ = $0[index]?.removeValue(forKey: request.channels[0]) } }
            } catch {
                if Task.isCancelled { return true }
                if error.isOpenFailure {
                    fail(device, &p, from: p.next, error, synced)
                    p.openFailure = error
                    return true
                }
                if !error.isSilence { p.answered = true }
                if error.isSilence && p.retriesLeft > 0 {
                    p.retriesLeft -= 1
                    logger.debug("request timed out, retried at the device's next turn", metadata: [
                        "device": "\(device.id)", "address": "\(request.address)", "error": "\(error)"])
                    return false
                }
                if p.firstError == nil { p.firstError = error }
                if error.exception == .illegalDataAddress && request.channels.count > 1 {
                    if let openFailure = await isolateRefused(device, index: index, request, &p, synced) {
                        p.openFailure = openFailure
                        return true
                    }
                } else {
                    if error.exception == .illegalDataAddress, let i = request.channels.first {
                        refused.withLock { $0[index, default: [:]][i] = ContinuousClock.now }
                    }
                    logger.debug("read failed", metadata: ["device": "\(device.id)", "address": "\(request.address)", "error": "\(error)"])
                    for i in request.channels { p.slots[i] = failed(device, i, error, synced) }
                    // A silent device fails every request the same way: don't wait out a timeout per request.
                    if error.isSilence || error.isConnectionFailure {
                        fail(device, &p, from: p.next + 1, error, synced)
                        return true
                    }
                }
            }
            p.next += 1
            p.retriesLeft = p.retries
        }
        return true
    }

    /// One bad register fails a whole merged request (exception 2): reads its channels one by one this time, and
    /// leaves the refused ones out of the merged plan from now on. Returns the error if the bus could not be opened.
    private func isolateRefused(_ device: DeviceConfig, index: Int, _ request: ReadRequest, _ p: inout PollProgress, _ synced: Bool) async -> ModbusError? {
        for (k, i) in request.channels.enumerated() {
            let single = ReadRequest.single(i, of: device.channels)
            do {
                let words = try await send(single, unit: device.unitID)
                p.slots[i] = decode(device, i, words, single, clock.now(), synced)
            } catch {
                if Task.isCancelled { return nil }
                if error.isOpenFailure {
                    for j in request.channels[k...] { p.slots[j] = failed(device, j, error, synced) }
                    fail(device, &p, from: p.next + 1, error, synced)
                    return error
                }
                if error.exception == .illegalDataAddress {
                    refused.withLock { $0[index, default: [:]][i] = ContinuousClock.now }
                    logger.warning("device \(device.id) on bus \(bus.name) refuses channel \(device.channels[i].id) (exception 2); it is left out of the merged requests and retried alone every \(Self.refusedRetryInterval)")
                }
                p.slots[i] = failed(device, i, error, synced)
            }
        }
        return nil
    }

    /// Marks the channels of requests `from...` failed as `error` failed the request before them (they were not
    /// sent: the device is silent or the link is gone) and ends the poll there.
    private func fail(_ device: DeviceConfig, _ p: inout PollProgress, from first: Int, _ error: ModbusError, _ synced: Bool) {
        if first < p.plan.count {
            for request in p.plan[first...] {
                for i in request.channels { p.slots[i] = failed(device, i, error, synced) }
            }
        }
        p.next = p.plan.count
    }

    /// The quality a failed read gives its channels: `timeout` when the device (or, by exception 11, the device
    /// behind a gateway) did not answer, `device_fault` with the code when it answered with an exception,
    /// `comm_failure` when the connection was lost, could not be opened, or carried something that is not Modbus.
    static func quality(of error: ModbusError) -> (Quality, UInt8) {
        if error.isTimeout || error.exception == .gatewayTargetFailedToRespond { return (.timeout, 0) }
        if let exception = error.exception, !error.isSilence { return (.deviceFault, exception.rawValue) }
        return (.commFailure, 0)
    }

    private func failed(_ device: DeviceConfig, _ i: Int, _ error: ModbusError, _ synced: Bool) -> Reading {
        let (quality, code) = Self.quality(of: error)
        return failed(device, i, quality, synced, exception: code)
    }

    /// Each device's merged plan, recomputed only when the set of channels left out of it changes (not every poll).
    private let plans = Mutex<[Int: (excluded: Set<Int>, plan: [ReadRequest])]>([:])

    private func mergedPlan(_ device: DeviceConfig, index: Int, excluding excluded: Set<Int>) -> [ReadRequest] {
        if let cached = plans.withLock({ $0[index] }), cached.excluded == excluded { return cached.plan }
        let plan = RequestPlanner.plan(device.channels, limits: bus.limits, excluding: excluded)
        plans.withLock { $0[index] = (excluded, plan) }
        return plan
    }

    private func failed(_ device: DeviceConfig, _ i: Int, _ quality: Quality, _ synced: Bool, exception: UInt8 = 0) -> Reading {
        Reading(device: device.id, channel: device.channels[i].id, time: clock.now(), value: .none,
                unit: device.channels[i].unit, quality: quality, clockSynchronized: synced, exceptionCode: exception)
    }

    private func decode(_ device: DeviceConfig, _ i: Int, _ words: [UInt16], _ request: ReadRequest, _ time: UTCInstant, _ synced: Bool) -> Reading {
        RegisterDecoder.reading(device: device.id, channel: device.channels[i], words: words, requestAddress: request.address,
                                time: time, clockSynchronized: synced)
    }

    // MARK: the wire

    /// When the last request on the bus ended (its response arrived or it failed): the pause counts from here.
    private let lastRequestEnd = Mutex<ContinuousClock.Instant?>(nil)

    /// Every request of the poller goes through here: keeps the bus pause, sends an exception 6 (busy) answer's
    /// request again after short waits, and re-sends once on a fresh connection when an established one broke under
    /// the request (a bus matter, not the device's).
    private func send(_ r: ReadRequest, unit: UInt8) async throws(ModbusError) -> [UInt16] {
        var busyWaits = Self.busyWaits(responseTimeout: bus.timeouts.response)[...]
        var resent = false
        var gap = bus.pause
        while true {
            do {
                return try await wire(r, unit: unit, gap: gap)
            } catch {
                gap = bus.pause
                if error.exception == .serverDeviceBusy, let wait = busyWaits.popFirst(), !Task.isCancelled {
                    logger.debug("device busy (exception 6), asking again in \(wait)", metadata: ["unit": "\(unit)", "address": "\(r.address)"])
                    gap = max(wait, bus.pause)
                    continue
                }
                if error.isConnectionFailure && !error.isOpenFailure && !resent {
                    logger.debug("connection lost under a request, re-opening and sending it again", metadata: ["error": "\(error)"])
                    resent = true
                    continue
                }
                throw error
            }
        }
    }

    /// One request on the wire, sent no sooner than `gap` after the previous one ended; bits come back as 0/1 words
    /// so decoding is uniform.
    private func wire(_ r: ReadRequest, unit: UInt8, gap: Duration) async throws(ModbusError) -> [UInt16] {
        if gap > .zero, let end = lastRequestEnd.withLock({ $0 }), end + gap > .now {
            try? await Task.sleep(until: end + gap, clock: .continuous)
            // Stopping cuts the pause short: send nothing then, rather than a request without its pause.
            if Task.isCancelled { throw cancelledError() }
        }
        defer { lastRequestEnd.withLock { $0 = .now } }
        switch r.table {
        case .coil: return try await client.readCoils(unit: unit, address: r.address, count: r.count).map { $0 ? 1 : 0 }
        case .discrete: return try await client.readDiscreteInputs(unit: unit, address: r.address, count: r.count).map { $0 ? 1 : 0 }
        case .holding: return try await client.readHoldingRegisters(unit: unit, address: r.address, count: r.count)
        case .input: return try await client.readInputRegisters(unit: unit, address: r.address, count: r.count)
        }
    }

    // MARK: reads for other callers

    /// A read queued by another caller, answered by the scheduler.
    private struct CallerRead: Sendable {
        var id: Int
        var unit: UInt8
        var request: ReadRequest
        var continuation: CheckedContinuation<Result<[UInt16], ModbusError>, Never>
    }

    private struct Inbox: Sendable {
        var queue: [CallerRead] = []
        var nextID = 0
        var ended = false
        /// The scheduler's idle wait, cancelled to wake it when a read is queued.
        var sleeper: Task<Void, Never>?

        mutating func take() -> CallerRead? { queue.isEmpty ? nil : queue.removeFirst() }

        mutating func end() -> [CallerRead] {
            ended = true
            defer { queue = [] }
            return queue
        }
    }

    private let inbox = Mutex(Inbox())

    /// Reads `count` registers (or bits, as 0/1) at `address` of `table` from `unit`, in turn with the polls: the
    /// read is queued and sent between two device polls, after the bus' pause, with the same busy and lost-connection
    /// handling as the polls (but no timeout retries: the caller decides). While the bus cannot be opened it fails at
    /// once with the error that keeps it closed. Reads queued before `run` starts wait for it; once `run` has ended
    /// they fail with `call == "shutdown"`. Cancelling the caller withdraws a read that has not been sent yet; one
    /// already on the wire finishes (bounded by the response timeout).
    public func read(unit: UInt8, table: RegisterTable, address: Int, count: Int) async throws(ModbusError) -> [UInt16] {
        let id = inbox.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        let request = ReadRequest(table: table, address: address, count: count, channels: [])
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<[UInt16], ModbusError>, Never>) in
                let job = CallerRead(id: id, unit: unit, request: request, continuation: continuation)
                enum Outcome { case queued(Task<Void, Never>?), cancelled, ended }
                let outcome = inbox.withLock { s -> Outcome in
                    if s.ended { return .ended }
                    // Checked under the lock the cancellation handler takes too: either it sees the read queued, or
                    // the read sees the cancellation.
                    if Task.isCancelled { return .cancelled }
                    s.queue.append(job)
                    defer { s.sleeper = nil }
                    return .queued(s.sleeper)
                }
                switch outcome {
                case .queued(let sleeper): sleeper?.cancel()
                case .cancelled: continuation.resume(returning: .failure(cancelledError()))
                case .ended: continuation.resume(returning: .failure(stoppedError()))
                }
            }
        } onCancel: {
            let withdrawn = inbox.withLock { s -> CallerRead? in
                guard let k = s.queue.firstIndex(where: { $0.id == id }) else { return nil }
                return s.queue.remove(at: k)
            }
            withdrawn?.continuation.resume(returning: .failure(cancelledError()))
        }
        return try result.get()
    }

    /// Waits until `deadline`, or until a caller queues a read, or the task is cancelled.
    private func idle(until target: ContinuousClock.Instant) async {
        // At most one liveness tick at a time: the scheduler turns even while it has nothing to do.
        let deadline = min(target, .now + Self.livenessTick)
        let sleeper = Task<Void, Never> { _ = try? await Task.sleep(until: deadline, clock: .continuous) }
        let woken = inbox.withLock { s -> Bool in
            if !s.queue.isEmpty { return true }
            s.sleeper = sleeper
            return false
        }
        if woken { sleeper.cancel() }
        await withTaskCancellationHandler { await sleeper.value } onCancel: { sleeper.cancel() }
        inbox.withLock { $0.sleeper = nil }
    }

    private func stoppedError() -> ModbusError {
        ModbusError(bus: bus.name, endpoint: bus.transport.endpoint, call: "shutdown", errno: ECANCELED,
                    message: "the bus poller has stopped")
    }

    private func cancelledError() -> ModbusError {
        ModbusError(bus: bus.name, endpoint: bus.transport.endpoint, call: "cancelled", errno: ECANCELED,
                    message: "cancelled before it was sent")
    }
}

extension ModbusError {
    /// The bus could not be opened at all (connect refused, unreachable or timed out, name unresolvable, serial
    /// device missing): a matter for the bus' reconnect backoff, not for any one device.
    fileprivate var isOpenFailure: Bool { call == "modbus_connect" || isNameResolutionFailure }

    /// The device did not answer: a timeout, or a gateway saying the slave behind it did not (exceptions 10, 11).
    fileprivate var isSilence: Bool {
        isTimeout || exception == .gatewayPathUnavailable || exception == .gatewayTargetFailedToRespond
    }
}
