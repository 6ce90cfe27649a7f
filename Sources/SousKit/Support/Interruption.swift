import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C or SIGTERM while sous works: the first one asks the running operation to stop at its next safe point
/// (a wait, a transfer's poll, between roll steps) and say what state it leaves; the CLI exits at once on a second.
public final class Interruption: @unchecked Sendable {
    public static let shared = Interruption()
    private let lock = NSLock()
    private var signal: Int32?

    /// The process's own is `shared`; tests make their own.
    public init() {}

    public var requested: Int32? {
        lock.lock(); defer { lock.unlock() }
        return signal
    }

    public func request(_ sig: Int32) {
        lock.lock(); defer { lock.unlock() }
        signal = sig
    }

    /// Throws when a stop was asked for; `state` says what the nodes are left with and what to run next.
    public func check(_ step: String, node: String? = nil, state: String) throws {
        guard let s = requested else { return }
        throw StepFailure(step: step, node: node, cause: "interrupted (\(s == SIGTERM ? "SIGTERM" : "SIGINT")); \(state)", hint: nil, exitCode: .interrupted)
    }
}
