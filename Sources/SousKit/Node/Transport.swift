import Foundation

/// A command to run on a node. The command line is built from argv by `ShellQuote`; secrets travel in `stdin`
/// or in uploaded 0600 files, never in argv (a remote `ps` shows argv).
public struct RemoteCommand: Sendable, CustomStringConvertible {
    public var argv: [String]
    public var stdin: Data?
    /// Ends the remote command (TERM, then KILL 5 s later) and fails the step when it runs longer. Required:
    /// only `sous exec` without `--timeout` passes nil, because the operator asked for an unbounded command.
    public var timeout: Duration?
    /// Run through `sudo -n` (never prompts; a password requirement is a clear error).
    public var sudo: Bool
    /// When set, Ctrl-C stops waiting for this command within a fraction of a second (exit 130), leaving it to
    /// finish or fail on the node: only for commands that change nothing half-way (a pull, a read-only probe).
    public var stopsOn: Interruption?

    public init(_ argv: [String], stdin: Data? = nil, timeout: Duration?, sudo: Bool = false) {
        self.argv = argv
        self.stdin = stdin
        self.timeout = timeout
        self.sudo = sudo
    }

    /// A fixed shell snippet (pipes, redirections) run by `sh -c`, the snippet quoted as one argument. Data never
    /// goes into the snippet: it follows as positional arguments (`$1`, `$2`, … inside the script).
    public static func shell(_ script: String, args: [String] = [], stdin: Data? = nil, timeout: Duration?, sudo: Bool = false) -> RemoteCommand {
        RemoteCommand(["sh", "-c", script, "sous"] + args, stdin: stdin, timeout: timeout, sudo: sudo)
    }

    /// What identifies the command for a test double and the log: argv and sudo (stdin is data, not identity).
    public var key: String { (sudo ? "sudo " : "") + argv.joined(separator: " ") }

    /// This command, stoppable by Ctrl-C while it runs (see `stopsOn`); nil leaves it waited for (a rollback's).
    public func stoppable(by interruption: Interruption?) -> RemoteCommand {
        var c = self
        c.stopsOn = interruption
        return c
    }

    /// The exact line the SSH exec request carries. `exec` replaces the login shell, so the exit status
    /// or signal sshd reports is the command's own. With `sudoPasswordOnStdin`, the first line of stdin is the
    /// sudo password (`withSudoPassword`): read by the shell, handed to `sudo -S -v` on a pipe, then the command
    /// runs under `sudo -n` on the ticket that left (keyed on its parent, this shell), with the rest of stdin.
    /// The password is never in argv; a user without a password requirement validates without reading it.
    public func commandLine(sudoPasswordOnStdin: Bool = false) throws(ShellQuote.Unrepresentable) -> String {
        var argv = self.argv
        if let timeout {
            let seconds = max(1, Int((Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18).rounded(.up)))
            argv = ["timeout", "-k", "5", "\(seconds)"] + argv
        }
        if sudo && sudoPasswordOnStdin {
            argv = ["sh", "-c", #"IFS= read -r p; printf '%s\n' "$p" | sudo -S -v -p '' 2>/dev/null; p=; sudo -n -- "$@""#, "sous-sudo"] + argv
        } else if sudo {
            argv = ["sudo", "-n", "--"] + argv
        }
        return "exec " + (try ShellQuote.join(argv))
    }

    /// The stdin a sudo command carries when the nodes' sudo needs a password: the password's line first.
    public static func withSudoPassword(_ password: Secret, _ stdin: Data?) -> Data {
        Data((password.reveal() + "\n").utf8) + (stdin ?? Data())
    }

    public var description: String { (try? commandLine()) ?? argv.joined(separator: " ") }
}

/// What a remote command did.
public struct CommandResult: Sendable {
    public var stdout: Data
    public var stderr: Data
    /// The exit status, nil when the command was ended by a signal.
    public var exitStatus: Int32?
    /// The signal name (without SIG) when the command was killed.
    public var exitSignal: String?
    public var duration: Duration

    public init(stdout: Data, stderr: Data, exitStatus: Int32?, exitSignal: String?, duration: Duration) {
        self.stdout = stdout
        self.stderr = stderr
        self.exitStatus = exitStatus
        self.exitSignal = exitSignal
        self.duration = duration
    }

    public var ok: Bool { exitStatus == 0 }
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }

    /// The last `lines` lines of stderr (or stdout when stderr is empty), for error messages.
    public func tail(_ lines: Int = 5) -> String {
        let text = stderr.isEmpty ? stdoutText : stderrText
        return text.split(separator: "\n", omittingEmptySubsequences: true).suffix(lines).joined(separator: "\n")
    }
}

/// One open connection to one node, reused for a whole operation.
public protocol NodeSession: Sendable {
    var node: NodeSpec { get }
    func run(_ command: RemoteCommand) async throws -> CommandResult
    /// Writes `data` to `path` with `mode`, atomically: a temporary name in the same directory, then a rename.
    func upload(_ data: Data, to path: String, mode: Int, sudo: Bool) async throws
    func close() async
    /// The host key sous verified for this node (`TYPE BASE64`), so a node can be told to trust it.
    var hostKey: String? { get }
    /// Runs a command whose stdin is pulled from `input` chunk by chunk until it returns nil (a stream in).
    func run(_ command: RemoteCommand, input: @escaping @Sendable () throws -> Data?) async throws -> CommandResult
    /// Runs a command whose stdout goes to `output` as it arrives (a stream out).
    func run(_ command: RemoteCommand, output: @escaping @Sendable (Data) throws -> Void) async throws -> CommandResult
}

extension NodeSession {
    public var hostKey: String? { nil }
    public func run(_ command: RemoteCommand, input: @escaping @Sendable () throws -> Data?) async throws -> CommandResult {
        throw UsageError("this transport cannot stream")
    }
    public func run(_ command: RemoteCommand, output: @escaping @Sendable (Data) throws -> Void) async throws -> CommandResult {
        throw UsageError("this transport cannot stream")
    }
}

/// A bounded byte pipe between two streaming commands on two nodes: the producer blocks when it holds
/// `limit` bytes, the consumer when it is empty; either side failing cancels both.
public final class BytePipe: @unchecked Sendable {
    private let cond = NSCondition()
    private var chunks: [Data] = []
    private var held = 0
    private var closed = false
    private var cancelled = false
    public private(set) var moved = 0
    let limit: Int

    public init(limit: Int = 16 << 20) { self.limit = limit }

    struct Cancelled: Error {}

    public func put(_ d: Data) throws {
        cond.lock(); defer { cond.unlock() }
        while held >= limit && !cancelled { cond.wait() }
        if cancelled { throw Cancelled() }
        chunks.append(d)
        held += d.count
        moved += d.count
        cond.broadcast()
    }

    public func take() throws -> Data? {
        cond.lock(); defer { cond.unlock() }
        while chunks.isEmpty && !closed && !cancelled { cond.wait() }
        if cancelled { throw Cancelled() }
        if chunks.isEmpty { return nil }
        let d = chunks.removeFirst()
        held -= d.count
        cond.broadcast()
        return d
    }

    public func close() { cond.lock(); closed = true; cond.broadcast(); cond.unlock() }
    public func cancel() { cond.lock(); cancelled = true; cond.broadcast(); cond.unlock() }
    public var bytes: Int { cond.lock(); defer { cond.unlock() }; return moved }
}

/// Opens sessions to nodes. The libssh2 implementation lives in the SSH module; tests of orchestration
/// may use a recording double.
public protocol Transport: Sendable {
    func connect(_ node: NodeSpec) async throws -> NodeSession
}

/// Connects to every node at once, runs `body` with the open sessions, and closes them all afterwards, whether
/// `body` succeeds or throws. A node that cannot be reached fails the operation before anything runs (reported
/// as the `connect` step).
public func withSessions<T: Sendable>(_ nodes: [NodeSpec], transport: Transport, reporter: Reporter,
                                      _ body: ([String: NodeSession]) async throws -> T) async throws -> T {
    let clock = ContinuousClock(), t = clock.now
    let connected = await fanOut(nodes) { try await transport.connect($0) }
    var sessions: [String: NodeSession] = [:]
    for o in connected { if case .success(let s) = o.result { sessions[o.node.name] = s } }
    func closeAll() async { for s in sessions.values { await s.close() } }
    if let failed = connected.first(where: { if case .failure = $0.result { return true } else { return false } }),
       case .failure(let e) = failed.result {
        await closeAll()
        reporter.step("connect", .failed, failed.node.name, elapsed: clock.now - t)
        throw StepFailure.unreachable(failed.node, e)
    }
    reporter.step("connect", .ok, "\(sessions.count) nodes", elapsed: clock.now - t)
    do {
        let value = try await body(sessions)
        await closeAll()
        return value
    } catch {
        await closeAll()
        throw error
    }
}

extension Transport {
    /// Connects, runs `body`, and closes the session whether `body` succeeds or throws.
    public func with<T: Sendable>(_ node: NodeSpec, _ body: (NodeSession) async throws -> T) async throws -> T {
        let s = try await connect(node)
        do {
            let value = try await body(s)
            await s.close()
            return value
        } catch {
            await s.close()
            throw error
        }
    }
}

/// The outcome on one node of a fanned-out step.
public struct NodeOutcome<T: Sendable>: Sendable {
    public var node: NodeSpec
    public var result: Result<T, any Error>
    public var duration: Duration
}

/// Runs `body` on every node at once, one task per node, and returns every node's outcome in inventory
/// order: one node failing never hides the others' results.
public func fanOut<T: Sendable>(_ nodes: [NodeSpec], _ body: @escaping @Sendable (NodeSpec) async throws -> T) async -> [NodeOutcome<T>] {
    await withTaskGroup(of: (Int, NodeOutcome<T>).self) { group in
        for (i, node) in nodes.enumerated() {
            group.addTask {
                let clock = ContinuousClock()
                let start = clock.now
                do {
                    let value = try await body(node)
                    return (i, NodeOutcome(node: node, result: .success(value), duration: clock.now - start))
                } catch {
                    return (i, NodeOutcome(node: node, result: .failure(error), duration: clock.now - start))
                }
            }
        }
        var results = [NodeOutcome<T>?](repeating: nil, count: nodes.count)
        for await (i, outcome) in group { results[i] = outcome }
        return results.map { $0! }
    }
}
