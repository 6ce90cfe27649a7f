import Foundation
import SousKit

/// A transport whose nodes answer commands by their value (`RemoteCommand.key`): each answer is a closure
/// over the node's state, so a test scripts a cluster (containers, files, the lock) without root or SSH.
/// Every command, upload and connection is recorded; a command nobody scripted fails the test's operation.
public final class ScriptedTransport: Transport, @unchecked Sendable {
    public final class Node: @unchecked Sendable {
        public let spec: NodeSpec
        let mutex = NSLock()
        var handlers: [String: (RemoteCommand) -> CommandResult] = [:]
        public private(set) var calls: [RemoteCommand] = []
        public private(set) var uploads: [(path: String, data: Data, mode: Int)] = []
        /// Called with each command before it is answered (to interrupt, or to fail at a chosen point).
        public var beforeEach: ((RemoteCommand) -> Void)?
        /// Answers uploads: path → content. The env file and anything else sous writes.
        public var files: [String: Data] = [:]
        public var connections = 0

        init(_ spec: NodeSpec) { self.spec = spec }

        /// Answers `command` (by its key) with `respond`.
        public func on(_ command: RemoteCommand, _ respond: @escaping (RemoteCommand) -> CommandResult) {
            mutex.withLock { handlers[command.key] = respond }
        }

        /// Answers every command whose argv starts with `prefix` (scripts whose data arguments vary).
        public func on(prefix: [String], _ respond: @escaping (RemoteCommand) -> CommandResult) {
            mutex.withLock { prefixes.append((prefix, respond)) }
        }
        var prefixes: [([String], (RemoteCommand) -> CommandResult)] = []

        func answer(_ c: RemoteCommand) -> CommandResult {
            beforeEach?(c)
            return mutex.withLock {
                calls.append(c)
                if let h = handlers[c.key] { return h(c) }
                if let (_, h) = prefixes.filter({ c.argv.starts(with: $0.0) }).max(by: { $0.0.count < $1.0.count }) { return h(c) }
                return .fail(127, "unscripted command on \(spec.name): \(c.key)")
            }
        }

        func store(_ data: Data, _ path: String, _ mode: Int) {
            mutex.withLock {
                uploads.append((path, data, mode))
                files[path] = data
            }
        }

        public var commandKeys: [String] { mutex.withLock { calls.map(\.key) } }
    }

    public let nodes: [String: Node]
    /// Nodes that refuse the connection.
    public var unreachable: Set<String> = []

    public init(_ specs: [NodeSpec]) {
        nodes = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, Node($0)) })
    }

    public subscript(_ name: String) -> Node { nodes[name]! }

    public struct Refused: SousFailure {
        public var message: String
        public var hint: String? { nil }
        public var exitCode: ExitStatus { .unreachable }
    }

    public func connect(_ node: NodeSpec) async throws -> NodeSession {
        if unreachable.contains(node.name) { throw Refused(message: "\(node.name): connection refused") }
        let n = nodes[node.name]!
        n.mutex.withLock { n.connections += 1 }
        return Session(node: n)
    }

    struct Session: NodeSession {
        let node_: Node
        init(node: Node) { node_ = node }
        var node: NodeSpec { node_.spec }
        func run(_ command: RemoteCommand) async throws -> CommandResult {
            // As the SSH transport does: a stoppable command ends at once when Ctrl-C was asked for.
            if let stop = command.stopsOn { try stop.check(command.argv.first ?? "command", node: node.name, state: "stopped waiting") }
            return node_.answer(command)
        }
        func upload(_ data: Data, to path: String, mode: Int, sudo: Bool) async throws { node_.store(data, path, mode) }
        func close() async {}
    }
}

extension CommandResult {
    public static func ok(_ stdout: String = "") -> CommandResult {
        CommandResult(stdout: Data(stdout.utf8), stderr: Data(), exitStatus: 0, exitSignal: nil, duration: .zero)
    }
    public static func fail(_ status: Int32, _ stderr: String, stdout: String = "") -> CommandResult {
        CommandResult(stdout: Data(stdout.utf8), stderr: Data(stderr.utf8), exitStatus: status, exitSignal: nil, duration: .zero)
    }
}

/// An HTTP probe answering by path from a closure, recording every request (URL and whether a key was sent).
public final class ScriptedProbe: HTTPProbe, @unchecked Sendable {
    let mutex = NSLock()
    var answer: (_ method: String, _ url: String, _ body: Data?, _ bearer: Secret?) -> HTTPResponse?
    public private(set) var requests: [String] = []

    public init(_ answer: @escaping (_ method: String, _ url: String, _ body: Data?, _ bearer: Secret?) -> HTTPResponse?) { self.answer = answer }

    struct NoAnswer: Error, CustomStringConvertible { var description: String }

    func respond(_ method: String, _ url: String, _ body: Data?, _ bearer: Secret?) throws -> HTTPResponse {
        let r = mutex.withLock { () -> HTTPResponse? in
            requests.append("\(method) \(url)")
            return answer(method, url, body, bearer)
        }
        guard let r else { throw NoAnswer(description: "\(method) \(url): connection refused") }
        return r
    }

    public func get(_ url: String, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse { try respond("GET", url, nil, bearer) }
    public func post(_ url: String, json: Data, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse { try respond("POST", url, json, bearer) }
}
