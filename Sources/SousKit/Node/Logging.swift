import Foundation
import Logging

/// `--verbose`: every remote command as it runs (node, the exact command line, duration, exit status) and every
/// upload (path, size, mode), through swift-log. Secrets never reach it: they travel on stdin or in uploaded
/// files, and only their sizes are logged.
public struct LoggingTransport: Transport {
    public var base: Transport
    public var logger: Logger

    public init(_ base: Transport, logger: Logger) {
        self.base = base
        self.logger = logger
    }

    public func connect(_ node: NodeSpec) async throws -> NodeSession {
        let start = ContinuousClock.now
        do {
            let s = try await base.connect(node)
            logger.debug("connected in \(Self.seconds(since: start))", metadata: ["node": "\(node.name)"])
            return LoggedSession(base: s, logger: logger)
        } catch {
            logger.debug("connect failed after \(Self.seconds(since: start)): \((error as? SousFailure)?.message ?? "\(error)")", metadata: ["node": "\(node.name)"])
            throw error
        }
    }

    static func seconds(since start: ContinuousClock.Instant) -> String { String(format: "%.2f s", (ContinuousClock.now - start).seconds) }
}

final class LoggedSession: NodeSession, @unchecked Sendable {
    let base: NodeSession
    let logger: Logger
    init(base: NodeSession, logger: Logger) {
        self.base = base
        self.logger = logger
    }

    var node: NodeSpec { base.node }
    var hostKey: String? { base.hostKey }

    func logged(_ command: RemoteCommand, _ body: () async throws -> CommandResult) async throws -> CommandResult {
        let start = ContinuousClock.now
        let line = command.description + (command.stdin.map { " (\($0.count) bytes on stdin)" } ?? "")
        do {
            let r = try await body()
            let end = r.exitStatus.map { "exit \($0)" } ?? "signal \(r.exitSignal ?? "?")"
            logger.debug("\(line) → \(end) in \(LoggingTransport.seconds(since: start))", metadata: ["node": "\(node.name)"])
            return r
        } catch {
            logger.debug("\(line) → failed after \(LoggingTransport.seconds(since: start)): \((error as? SousFailure)?.message ?? "\(error)")", metadata: ["node": "\(node.name)"])
            throw error
        }
    }

    func run(_ command: RemoteCommand) async throws -> CommandResult { try await logged(command) { try await base.run(command) } }
    func run(_ command: RemoteCommand, input: @escaping @Sendable () throws -> Data?) async throws -> CommandResult {
        try await logged(command) { try await base.run(command, input: input) }
    }
    func run(_ command: RemoteCommand, output: @escaping @Sendable (Data) throws -> Void) async throws -> CommandResult {
        try await logged(command) { try await base.run(command, output: output) }
    }

    func upload(_ data: Data, to path: String, mode: Int, sudo: Bool) async throws {
        let start = ContinuousClock.now
        try await base.upload(data, to: path, mode: mode, sudo: sudo)
        logger.debug("upload \(path) (\(data.count) bytes, mode \(String(mode, radix: 8))\(sudo ? ", as root" : "")) in \(LoggingTransport.seconds(since: start))", metadata: ["node": "\(node.name)"])
    }

    func close() async { await base.close() }
}
