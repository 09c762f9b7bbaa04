import CLinux
import Net
import StateChart
import Time

/// The agent's one thread: `epoll` over registered file descriptors (UDP and raw sockets,
/// netlink, the control socket), the earliest timer deadline of its timer sources as the wait
/// timeout, and a `signalfd` for SIGINT, SIGTERM and SIGHUP. No Dispatch, no NIO, no async runtime.
public final class EventLoop {
    /// What a descriptor is waited for.
    public struct Interest: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Interest(rawValue: lanrage_epollin)
        public static let writable = Interest(rawValue: lanrage_epollout)
    }

    /// The signals the loop turns into callbacks.
    public static let handledSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    private let epoll: Int32
    private let clock: any TimeSource
    private var handlers: [Int32: () -> Void] = [:]
    private var timerSources: [any TimerSource] = []
    private var signalDescriptor: Int32 = -1
    private var signalHandler: ((Int32) -> Void)?
    private var previousSignalMask = sigset_t()
    private var running = false

    /// Counts of what the loop did.
    public private(set) var wakeups = 0

    public init(clock: any TimeSource = SystemClock()) throws(SystemError) {
        let fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard fd >= 0 else { throw SystemError("epoll_create1", "the event loop") }
        epoll = fd
        self.clock = clock
    }

    deinit {
        if signalDescriptor >= 0 {
            close(signalDescriptor)
            pthread_sigmask(SIG_SETMASK, &previousSignalMask, nil)
        }
        close(epoll)
    }

    /// Calls `handler` on the loop's thread whenever `descriptor` is ready.
    public func register(_ descriptor: Int32, for interest: Interest = .readable, handler: @escaping () -> Void) throws(SystemError) {
        var event = epoll_event()
        event.events = interest.rawValue
        event.data.fd = descriptor
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event) == 0 else {
            throw SystemError("epoll_ctl(ADD)", "descriptor \(descriptor)")
        }
        handlers[descriptor] = handler
    }

    /// Stops watching `descriptor` (call before closing it).
    public func unregister(_ descriptor: Int32) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, descriptor, nil)
        handlers[descriptor] = nil
    }

    /// Adds a source of timers (a scheduler) whose deadlines bound the loop's waits.
    public func addTimers(_ source: any TimerSource) {
        timerSources.append(source)
    }

    /// Blocks SIGINT, SIGTERM and SIGHUP for this thread and delivers them to `handler` through a
    /// `signalfd`, on the loop's thread, between other events.
    public func handleSignals(_ handler: @escaping (Int32) -> Void) throws(SystemError) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in EventLoop.handledSignals { sigaddset(&mask, signal) }
        let result = pthread_sigmask(SIG_BLOCK, &mask, &previousSignalMask)
        guard result == 0 else { throw SystemError("pthread_sigmask", "the event loop", errno: result) }
        let fd = signalfd(-1, &mask, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("signalfd", "the event loop") }
        signalDescriptor = fd
        signalHandler = handler
        try register(fd) { [unowned(unsafe) self] in self.readSignals() }
    }

    private func readSignals() {
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        while read(signalDescriptor, &info, size) == size {
            signalHandler?(Int32(info.ssi_signo))
        }
    }

    /// Called at the end of every round, after its descriptor callbacks and due timers: where work
    /// the round's callbacks collected is carried out at once (the agent's WireGuard changes).
    public var afterRound: (() -> Void)?

    /// Makes ``run(until:)`` return after the current round of callbacks.
    public func stop() { running = false }

    /// Runs until ``stop()`` is called, or `deadline` (monotonic nanoseconds) passes.
    /// Each round waits for the earliest of: a ready descriptor, the next timer, the deadline.
    public func run(until deadline: Nanoseconds? = nil) throws(SystemError) {
        running = true
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while running {
            let now = clock.now
            if let deadline, now >= deadline { break }
            var wake = deadline
            for source in timerSources {
                if let next = source.nextDeadline { wake = min(wake ?? next, next) }
            }
            let timeout: Int32
            if let wake {
                // Round up to whole milliseconds so a timer is never woken for too early.
                timeout = Int32(clamping: max(0, (wake - now + 999_999) / 1_000_000))
            } else {
                timeout = -1
            }
            let count = epoll_wait(epoll, &events, Int32(events.count), timeout)
            if count < 0 {
                if lanrage_errno() == EINTR { continue }
                throw SystemError("epoll_wait", "the event loop")
            }
            wakeups += 1
            for index in 0..<Int(count) {
                handlers[events[index].data.fd]?()
            }
            for source in timerSources { source.fireDueTimers() }
            afterRound?()
        }
        running = false
    }
}
