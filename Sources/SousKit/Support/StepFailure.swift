import Foundation

/// An operation failed at one step: the step, the node, the cause, that node's log, and the next command.
public struct StepFailure: SousFailure {
    public var step: String
    public var node: String?
    public var cause: String
    public var logTail: String?
    public var hint: String?
    public var exitCode: ExitStatus
    public init(step: String, node: String?, cause: String, logTail: String? = nil, hint: String?, exitCode: ExitStatus) {
        self.step = step
        self.node = node
        self.cause = cause
        self.logTail = logTail
        self.hint = hint
        self.exitCode = exitCode
    }

    /// A node that could not be reached or refused the connection.
    public static func unreachable(_ node: NodeSpec, _ e: any Error) -> StepFailure {
        StepFailure(step: "connect", node: node.name, cause: (e as? SousFailure)?.message ?? "\(e)", hint: (e as? SousFailure)?.hint, exitCode: .unreachable)
    }

    /// `e` as a failure of `step` on `node`; a StepFailure stays as it is.
    public static func wrap(_ e: any Error, step: String, node: String?) -> StepFailure {
        if let f = e as? StepFailure { return f }
        let s = e as? SousFailure
        return StepFailure(step: step, node: node, cause: s?.message ?? "\(e)", hint: s?.hint, exitCode: s?.exitCode ?? .checkFailed)
    }

    public var message: String {
        var m = "\(step) failed" + (node.map { " on \($0)" } ?? "") + ": \(cause)"
        if let logTail, !logTail.isEmpty { m += "\n--- last lines of \(node ?? "the") container log ---\n\(logTail)" }
        return m
    }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// A duration as every time option takes it: `90s`, `30m`, `1h`, `500ms` or bare seconds (`90`, `1.5`).
    /// Refuses zero, negative, non-finite and absurd values (over 30 days).
    public static func parse(_ text: String) throws(UsageError) -> Duration {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(text.trimmingCharacters(in: .whitespaces)), factor = 1.0
        for (suffix, f) in units where number.hasSuffix(suffix) {
            number = number.dropLast(suffix.count)
            factor = f
            break
        }
        guard number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let v = Double(number), v.isFinite, v > 0, v * factor <= 30 * 86400 else {
            throw UsageError("`\(text)` is not a duration like 90s, 30m, 1h or 500ms (positive, at most 30 days)")
        }
        return .milliseconds(Int((v * factor * 1000).rounded()))
    }
}
