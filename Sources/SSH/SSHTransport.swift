import Dispatch
import Foundation
import SousKit

/// The libssh2 transport. Each connection lives on its own serial dispatch queue (its own thread while it
/// blocks in poll), so fanning out to 32 nodes never ties up Swift's cooperative thread pool.
public struct SSHTransport: Transport {
    public var knownHosts: String
    public var acceptNew: Bool
    public var connectTimeout: Duration
    public var config: SSHConfig
    public var agentSocket: String?
    /// Warnings about ~/.ssh/config options sous does not support, reported once per connection.
    public var onWarning: @Sendable (String) -> Void
    /// For nodes whose sudo needs a password (`--ask-sudo-password`): sent on each sudo command's stdin.
    public var sudoPassword: Secret?

    public init(knownHosts: String? = nil, acceptNew: Bool = false, connectTimeout: Duration = .seconds(10),
                config: SSHConfig = .load(), agentSocket: String? = ProcessInfo.processInfo.environment["SSH_AUTH_SOCK"],
                onWarning: @escaping @Sendable (String) -> Void = { _ in }) {
        self.agentSocket = agentSocket
        self.knownHosts = knownHosts ?? "~/.ssh/known_hosts"
        self.acceptNew = acceptNew
        self.connectTimeout = connectTimeout
        self.config = config
        self.onWarning = onWarning
    }

    /// The target for a node: the inventory's values first, then ~/.ssh/config, then defaults.
    public func target(for node: NodeSpec) -> SSHTarget {
        let resolved = config.resolve(node.host)
        for w in resolved.unsupported { onWarning("\(node.name): \(w)") }
        var identities = node.identityFile.map { [$0] } ?? []
        identities += resolved.identityFiles
        identities += ["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"]
        var seen = Set<String>()
        identities = identities.filter { seen.insert(expandTilde($0)).inserted }
        var t = SSHTarget(name: node.name, host: resolved.hostName ?? node.host, port: node.port ?? resolved.port ?? 22,
                          user: node.user, identityFiles: identities, knownHosts: knownHosts, acceptNew: acceptNew,
                          connectTimeout: connectTimeout, agentSocket: agentSocket)
        t.sudoPassword = sudoPassword
        return t
    }

    public func connect(_ node: NodeSpec) async throws -> NodeSession {
        let session = SSHSession(node: node, target: target(for: node))
        do {
            try await session.perform { try $0.open() }
        } catch {
            await session.close()
            throw error
        }
        return session
    }
}

/// One node's connection, confined to a serial queue.
public final class SSHSession: NodeSession, @unchecked Sendable {
    public let node: NodeSpec
    private let connection: Connection
    private let queue: DispatchQueue

    init(node: NodeSpec, target: SSHTarget) {
        self.node = node
        self.connection = Connection(target: target)
        self.queue = DispatchQueue(label: "sous.ssh.\(node.name)")
    }

    func perform<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { [connection] in
                continuation.resume(with: Result { try body(connection) })
            }
        }
    }

    public func run(_ command: RemoteCommand) async throws -> CommandResult {
        try await perform { try $0.exec(command) }
    }

    public func run(_ command: RemoteCommand, input: @escaping @Sendable () throws -> Data?) async throws -> CommandResult {
        try await perform { try $0.exec(command, input: input) }
    }

    public func run(_ command: RemoteCommand, output: @escaping @Sendable (Data) throws -> Void) async throws -> CommandResult {
        try await perform { try $0.exec(command, output: output) }
    }

    public func upload(_ data: Data, to path: String, mode: Int, sudo: Bool) async throws {
        try await perform { try $0.upload(data, to: path, mode: mode, sudo: sudo) }
    }

    public var hostKey: String? { connection.verifiedHostKey }

    public func close() async {
        _ = try? await perform { $0.shutdown() }
    }
}
