import Foundation

/// The outcome of `sous roll`.
public struct RollResult: Sendable, Codable {
    /// The group, when the deployment has several.
    public var group: String? = nil
    public var from: String
    public var to: String
    public var outcome: RollOutcome
    public var fingerprint_old: String?
    public var fingerprint_new: String?
    /// Seconds from stopping the old engine until an engine (new, or the old one again) answered /health.
    public var serving_gap_s: Double?
    public var cause: String?
    /// What the bump changes for the recipe and its clients (`ReleaseChanges`), reported before the switch.
    public var changes: [String]? = nil
    public var finished_at: String
}

/// An image bump with automatic rollback: pre-pull the new image while the old one serves, switch, gate exactly
/// as `up` does, and on any failure start the previous image (still on the nodes) and gate that too. One session
/// per node from taking the lock to releasing it, the way back included.
public struct RollRunner: Sendable {
    public var recipe: Recipe
    public var inventory: Inventory
    public var newImage: String
    public var transport: Transport
    public var probe: HTTPProbe
    public var key: Secret?
    public var reporter: Reporter
    public var engineTimeout: Duration
    public var checkTimeout: Duration
    public var forceUnlock: Bool
    public var pollInterval: Duration = .milliseconds(250)
    public var interruption: Interruption = .shared

    public init(recipe: Recipe, inventory: Inventory, newImage: String, transport: Transport, probe: HTTPProbe, key: Secret?,
                reporter: Reporter, engineTimeout: Duration, checkTimeout: Duration, forceUnlock: Bool) {
        self.recipe = recipe
        self.inventory = inventory
        self.newImage = newImage
        self.transport = transport
        self.probe = probe
        self.key = key
        self.reporter = reporter
        self.engineTimeout = engineTimeout
        self.checkTimeout = checkTimeout
        self.forceUnlock = forceUnlock
    }

    func runner(_ d: Deployment, interruptible: Bool = true) -> UpRunner {
        var r = UpRunner(deployment: d, transport: transport, probe: probe, key: key, reporter: reporter,
                         engineTimeout: engineTimeout, pollInterval: pollInterval, checkTimeout: checkTimeout)
        r.interruptible = interruptible
        r.interruption = interruption
        return r
    }

    /// Gap: the start and wait steps of the run that brought an engine back.
    static func gap(_ steps: [StepRecord]) -> Double {
        (steps.filter { $0.step.hasPrefix("start.") || $0.step == "wait" }.map(\.seconds).reduce(0, +) * 1000).rounded() / 1000
    }

    public func run() async throws -> RollResult {
        // A new image whose vLLM lacks the recipe's parsers is refused before anything is touched.
        let newDeployment = try Deployment.make(recipe: recipe, inventory: inventory, image: newImage)
        return try await withSessions(inventory.nodes, transport: transport, reporter: reporter) { sessions in
            let head = sessions[inventory.head.name]!
            let current = try await head.run(DockerOps.configImage())
            let oldImage = current.ok ? current.value : inventory.image
            return try await ClusterLock.with(head, what: "roll \(oldImage) → \(newImage)", forceUnlock: forceUnlock, warn: { [reporter] in reporter.warning($0) }) { lock in
                let result = try await roll(from: oldImage, newDeployment: newDeployment, sessions: sessions, lock: lock)
                if let w = await JournalOps.record(try JournalOps.line(event: .roll, result), head: head) { reporter.warning(w) }
                return result
            }
        }
    }

    func fingerprint(_ d: Deployment) async -> String? {
        guard let r = try? await probe.post(d.inventory.baseURL + "/v1/chat/completions", json: AgentChecks.pingRequest(model: d.recipe.servedModelName), bearer: key, timeout: checkTimeout)
        else { return nil }
        return (try? JSONSerialization.jsonObject(with: r.body) as? [String: Any])?["system_fingerprint"] as? String
    }

    func roll(from oldImage: String, newDeployment: Deployment, sessions: [String: NodeSession], lock: ClusterLock.Holder) async throws -> RollResult {
        let oldDeployment = try Deployment.make(recipe: recipe, inventory: inventory, image: oldImage)
        let oldFingerprint = await fingerprint(oldDeployment)
        let changes = ReleaseChanges.between(oldDeployment.inventory.vllmVersion, newDeployment.inventory.vllmVersion, recipe: recipe)
        for c in changes { reporter.warning("\(oldImage) → \(newImage): \(c)") }

        // Pre-pull while the old engine keeps serving; one image ID everywhere.
        let clock = ContinuousClock(), t = clock.now
        try await lock.renew(covering: .seconds(3700))
        let image = newImage, stop = interruption
        let ids = try await onEveryNode(inventory.nodes, sessions, step: "pre-pull") { node, s -> String in
            let pull = try await s.run(DockerOps.pull(image).stoppable(by: stop))
            if !pull.ok { throw StepFailure(step: "pre-pull", node: node.name, cause: pull.tail(3), hint: "check the image name", exitCode: .checkFailed) }
            return try await s.run(DockerOps.imageID(image)).value
        }
        guard Set(ids.values).count == 1, let id = ids.values.first else {
            throw StepFailure(step: "pre-pull", node: nil, cause: "the nodes hold different image IDs for \(newImage)", hint: "pin the image by digest", exitCode: .checkFailed)
        }
        reporter.step("pre-pull", .changed, "\(newImage) \(id.prefix(19)) on every node, old engine still serving", elapsed: clock.now - t)
        try interruption.check("roll", state: "nothing was switched: the old engine still serves")

        var result = RollResult(group: nil, from: oldImage, to: newImage, outcome: .verified, fingerprint_old: oldFingerprint, fingerprint_new: nil,
                                serving_gap_s: nil, cause: nil, changes: changes.isEmpty ? nil : changes, finished_at: "")
        do {
            let up = try await runner(newDeployment).run(sessions, lock: lock)
            result.fingerprint_new = up.fingerprint
            result.serving_gap_s = Self.gap(up.steps)
        } catch {
            let interrupted = interruption.requested != nil
            result.cause = interrupted ? "interrupted while \(newImage) started" : (error as? SousFailure)?.message ?? "\(error)"
            reporter.step("rollback", .changed, "to \(oldImage): " + (interrupted ? "interrupted" : "the new image failed"), elapsed: .zero)
            do {
                // The way back is not interruptible: it is what an interruption asks for.
                let back = try await runner(oldDeployment, interruptible: false).run(sessions, lock: lock)
                result.outcome = .rolledBack
                result.fingerprint_new = back.fingerprint
                result.serving_gap_s = Self.gap(back.steps)
            } catch {
                result.outcome = .rollbackFailed
                result.cause = (result.cause ?? "") + "\nrollback: " + ((error as? SousFailure)?.message ?? "\(error)")
            }
        }
        result.finished_at = ISO8601DateFormatter().string(from: Date())
        return result
    }
}
