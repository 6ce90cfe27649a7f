import Foundation

/// Progress of a long operation, one line per step.
public protocol Reporter: Sendable {
    func step(_ name: String, _ status: StepStatus, _ detail: String, elapsed: Duration)
    /// How something that waits is going (a transfer's bytes, the engine's load): the latest line per key.
    /// `done` marks the last line of that thing (always shown).
    func progress(key: String, line: String, done: Bool)
    /// Something the operator should know that does not stop the operation.
    func warning(_ text: String)
}

extension Reporter {
    public func progress(key: String, line: String, done: Bool) {}
    public func warning(_ text: String) {}
    public func progress(_ p: TransferProgress) { progress(key: p.node + " " + p.phase, line: p.line, done: p.total.map { p.done >= $0 } ?? false) }
}

public enum StepStatus: String, Sendable, Codable {
    case ok, changed, failed, skipped
}

/// A step's outcome, for the report and the journal.
public struct StepRecord: Sendable, Codable, Equatable {
    public var step: String
    public var status: StepStatus
    public var detail: String
    public var seconds: Double

    /// A record of a step that took `elapsed`, to the millisecond.
    public init(step: String, status: StepStatus, detail: String, elapsed: Duration) {
        self.step = step
        self.status = status
        self.detail = detail
        seconds = (elapsed.seconds * 1000).rounded() / 1000
    }
}

/// One step of an operation, as a value: what `sous plan` prints about it, how long it may take (the cluster
/// lock's lease covers it), what an interruption before it leaves, and what it does.
public struct Step<Context: Sendable>: Sendable {
    public var plan: PlanStep
    public var budget: Duration
    /// What the nodes are left with when Ctrl-C stops the operation before this step; nil: not a safe point.
    public var leaves: String?
    /// Checks whether the step is already done and, if not, does it: `ok`, `changed` or `skipped`, and a detail.
    public var apply: @Sendable (Context) async throws -> (StepStatus, String)

    public var id: String { plan.id }
}

/// Runs steps in order: a safe point for Ctrl-C before each, the lease renewed to cover it, one record each.
public struct StepRunner: Sendable {
    public var reporter: Reporter
    public var interruptible: Bool
    public var lock: ClusterLock.Holder?
    public var interruption: Interruption = .shared

    /// The records of every step that ran, in order, including the failed one.
    public func run<C>(_ steps: [Step<C>], _ context: C) async throws -> [StepRecord] {
        var records: [StepRecord] = []
        let clock = ContinuousClock()
        for step in steps {
            let start = clock.now
            do {
                if interruptible, let leaves = step.leaves { try interruption.check(step.id, state: leaves) }
                try await lock?.renew(covering: step.budget)
                let (status, detail) = try await step.apply(context)
                let elapsed = clock.now - start
                records.append(StepRecord(step: step.id, status: status, detail: detail, elapsed: elapsed))
                reporter.step(step.id, status, detail, elapsed: elapsed)
            } catch {
                let failure = StepFailure.wrap(error, step: step.id, node: nil)
                let elapsed = clock.now - start
                records.append(StepRecord(step: step.id, status: .failed, detail: failure.cause, elapsed: elapsed))
                if failure.exitCode != .interrupted { reporter.step(step.id, .failed, failure.node ?? "", elapsed: elapsed) }
                throw StepsFailed(failure: failure, records: records)
            }
        }
        return records
    }

    /// A step failed: the failure and every record up to it (a roll reads the serving gap from them).
    public struct StepsFailed: SousFailure {
        public var failure: StepFailure
        public var records: [StepRecord]
        public var message: String { failure.message }
        public var hint: String? { failure.hint }
        public var exitCode: ExitStatus { failure.exitCode }
    }
}

/// Runs `body` on every node at once; the first failure (in inventory order) is thrown after all finish,
/// as a StepFailure naming the node.
@discardableResult
public func onEveryNode<T: Sendable>(_ nodes: [NodeSpec], _ sessions: [String: NodeSession], step: String,
                                     _ body: @escaping @Sendable (NodeSpec, NodeSession) async throws -> T) async throws -> [String: T] {
    let outcomes = await fanOut(nodes) { node in try await body(node, sessions[node.name]!) }
    var values: [String: T] = [:]
    for o in outcomes {
        switch o.result {
        case .success(let v): values[o.node.name] = v
        case .failure(let e): throw StepFailure.wrap(e, step: step, node: o.node.name)
        }
    }
    return values
}

/// A reporter that says nothing (read-only helpers).
public struct SilentReporter: Reporter {
    public init() {}
    public func step(_ name: String, _ status: StepStatus, _ detail: String, elapsed: Duration) {}
}
