import Foundation

/// Process exit codes, the same for every subcommand (documented in README.md).
public enum ExitStatus: Int32, Sendable {
    /// Everything asked for was done and verified.
    case ok = 0
    /// A check failed or drift was found; the input itself was fine.
    case checkFailed = 1
    /// Bad input or usage: nothing was touched.
    case badInput = 2
    /// A node could not be reached or refused us (network, host key, authentication).
    case unreachable = 3
    /// Stopped by Ctrl-C or SIGTERM at a safe point (128 + SIGINT, as shells report it).
    case interrupted = 130
}

/// Where in a file a value came from (1-based line and column, as editors count).
public struct SourceLocation: Sendable, Equatable, Hashable {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }
}

/// One problem found in a recipe or inventory, with enough context for a person to fix it.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    public var severity: Severity
    public var file: String
    public var location: SourceLocation?
    /// Dotted key path, e.g. `parsers.tool_call` or `nodes[1].interconnect_ip`.
    public var keyPath: String
    public var problem: String
    public var hint: String?

    public init(_ severity: Severity = .error, file: String, location: SourceLocation?, keyPath: String, problem: String, hint: String? = nil) {
        self.severity = severity
        self.file = file
        self.location = location
        self.keyPath = keyPath
        self.problem = problem
        self.hint = hint
    }

    public var description: String {
        var where_ = file
        if let location { where_ += ":\(location.line):\(location.column)" }
        let key = keyPath.isEmpty ? "" : "\(keyPath): "
        var text = "\(where_): \(severity.rawValue): \(key)\(problem)"
        if let hint { text += "\n  hint: \(hint)" }
        return text
    }
}

/// Every sous failure that reaches the top level: a message, a hint naming the next step, an exit code.
public protocol SousFailure: Error, Sendable {
    var message: String { get }
    var hint: String? { get }
    var exitCode: ExitStatus { get }
}

/// Validation found errors in one or more files; nothing was touched.
public struct ConfigErrors: SousFailure, CustomStringConvertible {
    public var issues: [ConfigIssue]
    public init(_ issues: [ConfigIssue]) { self.issues = issues }
    public var message: String {
        let errors = issues.filter { $0.severity == .error }
        return "\(errors.count) problem\(errors.count == 1 ? "" : "s") in the input; nothing was changed\n"
            + issues.map(\.description).joined(separator: "\n")
    }
    public var hint: String? { nil }
    public var exitCode: ExitStatus { .badInput }
    public var description: String { message }
}

/// A usage problem that is not tied to a file location (a missing flag, a node name that does not exist).
public struct UsageError: SousFailure {
    public var message: String
    public var hint: String?
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
    public var exitCode: ExitStatus { .badInput }
}
