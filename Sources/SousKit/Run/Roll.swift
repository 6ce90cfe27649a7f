import Foundation

/// A cluster-wide lock: a file on the head created atomically (`set -C`), naming who holds it and why.
public enum ClusterLock {
    public static let path = NodePaths.stateDir + "/lock"

    public struct Held: SousFailure {
        public var holder: String
        public var message: String { "the cluster is locked: \(holder)" }
        public var hint: String? { "wait for that operation to finish; if it is stale (its process is gone), add --force-unlock" }
        public var exitCode: ExitStatus { .checkFailed }
    }

    public static func acquire(_ head: NodeSession, what: String) async throws {
        let who = "\(ProcessInfo.processInfo.environment["USER"] ?? "root")@\(ProcessInfo.processInfo.hostName) (pid \(getpid()))"
        let info = "\(who) since \(ISO8601DateFormatter().string(from: Date())): \(what)\n"
        _ = try await head.run(RemoteCommand(["install", "-d", "-m", "0755", "-o", head.node.user, NodePaths.stateDir], sudo: true))
        let r = try await head.run(RemoteCommand(["sh", "-c", "set -C; cat > \"$1\"", "sous-lock", path], stdin: Data(info.utf8)))
        if !r.ok {
            let holder = try await head.run(RemoteCommand(["cat", path])).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            throw Held(holder: holder.isEmpty ? "by an unknown holder (\(path))" : "by \(holder)")
        }
    }

    public static func release(_ head: NodeSession) async {
        _ = try? await head.run(RemoteCommand(["rm", "-f", path]))
    }
}

/// The outcome of `sous roll`.
public struct RollResult: Sendable, Encodable {
    public var from: String
    public var to: String
    /// verified, rolled back, or rollback failed.
    public var outcome: String
    public var fingerprint_old: String?
    public var fingerprint_new: String?
    /// Seconds from stopping the old engine until an engine (new, or the old one again) answered /health.
    public var serving_gap_s: Double?
    public var cause: String?
    public var finished_at: String
}

/// An image bump with automatic rollback: pre-pull the new image while the old one serves, switch, gate exactly
/// as `up` does, and on any failure start the previous image (still on the nodes) and gate that too.
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

    func deployment(image: String) throws(ConfigErrors) -> Deployment {
        try Deployment.make(recipe: recipe, inventory: inventory, image: image)
    }

    func runner(_ d: Deployment) -> UpRunner {
        UpRunner(deployment: d, transport: transport, probe: probe, key: key, reporter: reporter,
                 engineTimeout: engineTimeout, checkTimeout: checkTimeout)
    }

    /// Gap: the start and wait steps of the run that brought an engine back.
    static func gap(_ steps: [StepRecord]) -> Double {
        (steps.filter { $0.step == "start" || $0.step == "wait" }.map(\.seconds).reduce(0, +) * 1000).rounded() / 1000
    }

    public func run() async throws -> RollResult {
        // A new image whose vLLM lacks the recipe's parsers is refused before anything is touched.
        let newDeployment = try deployment(image: newImage)
        return try await transport.with(inventory.head) { headSession in
            if forceUnlock { await ClusterLock.release(headSession) }
            let current = try await headSession.run(RemoteCommand(["docker", "inspect", "--format", "{{.Config.Image}}", NodePaths.container]))
            let oldImage = current.ok ? current.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) : inventory.image
            try await ClusterLock.acquire(headSession, what: "roll \(oldImage) → \(newImage)")
            do {
                let result = try await roll(from: oldImage, newDeployment: newDeployment, head: headSession)
                await ClusterLock.release(headSession)
                return result
            } catch {
                await ClusterLock.release(headSession)
                throw error
            }
        }
    }

    func fingerprint(_ d: Deployment) async -> String? {
        let url = "http://\(d.inventory.head.host):\(d.inventory.port)/v1/chat/completions"
        guard let r = try? await probe.post(url, json: AgentChecks.pingRequest(model: d.recipe.servedModelName), bearer: key, timeout: checkTimeout) else { return nil }
        return (try? JSONSerialization.jsonObject(with: r.body) as? [String: Any])?["system_fingerprint"] as? String
    }

    func roll(from oldImage: String, newDeployment: Deployment, head: NodeSession) async throws -> RollResult {
        let oldDeployment = try deployment(image: oldImage)
        let oldFingerprint = await fingerprint(oldDeployment)

        // Pre-pull while the old engine keeps serving; one image ID everywhere.
        let clock = ContinuousClock()
        let t = clock.now
        let pulled = await fanOut(inventory.nodes) { node in
            try await transport.with(node) { s -> String in
                let pull = try await s.run(RemoteCommand(["docker", "pull", newImage], timeout: .seconds(3600)))
                if !pull.ok { throw UpFailure(step: "pre-pull", node: node.name, cause: pull.tail(3), hint: "check the image name", exitCode: .checkFailed) }
                return try await s.run(RemoteCommand(["docker", "image", "inspect", "--format", "{{.Id}}", newImage])).stdoutText
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        for o in pulled { if case .failure(let e) = o.result { throw e } }
        let ids = Set(pulled.compactMap { try? $0.result.get() })
        guard ids.count == 1 else {
            throw UpFailure(step: "pre-pull", node: nil, cause: "the nodes hold different image IDs for \(newImage)", hint: "pin the image by digest", exitCode: .checkFailed)
        }
        reporter.step("pre-pull", .changed, "\(newImage) \(ids.first!.prefix(19)) on every node, old engine still serving", elapsed: clock.now - t)
        try Interruption.shared.check("roll", state: "nothing was switched: the old engine still serves")

        var result = RollResult(from: oldImage, to: newImage, outcome: "verified", fingerprint_old: oldFingerprint, fingerprint_new: nil,
                                serving_gap_s: nil, cause: nil, finished_at: "")
        do {
            let up = try await runner(newDeployment).run()
            result.fingerprint_new = up.fingerprint
            result.serving_gap_s = Self.gap(up.steps)
        } catch {
            let interrupted = Interruption.shared.requested != nil
            result.cause = interrupted ? "interrupted while \(newImage) started" : (error as? SousFailure)?.message ?? "\(error)"
            reporter.step("rollback", .changed, "to \(oldImage): " + (interrupted ? "interrupted" : "the new image failed"), elapsed: .zero)
            do {
                // The way back is not interruptible: it is what an interruption asks for.
                var back = runner(oldDeployment)
                back.interruptible = false
                let backResult = try await back.run()
                result.outcome = "rolled back"
                result.fingerprint_new = backResult.fingerprint
                result.serving_gap_s = Self.gap(backResult.steps)
            } catch {
                result.outcome = "rollback failed"
                result.cause = (result.cause ?? "") + "\nrollback: " + ((error as? SousFailure)?.message ?? "\(error)")
            }
        }
        result.finished_at = ISO8601DateFormatter().string(from: Date())
        // The outcome matters more than the record of it: a failed journal write does not fail the roll.
        _ = try await Journal.append(event: "roll", result, head: head)
        return result
    }
}
