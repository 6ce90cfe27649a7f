import Foundation

/// A multi-group `up`: each group as `up` brings up one, then the router in front of them, checked like an agent
/// through the router.
public struct GroupsUpResult: Sendable, Encodable {
    public var cluster: String
    public var recipe: String
    public var image: String
    /// The endpoint clients use.
    public var router: String
    public var router_restarted: Bool
    public var groups: [UpResult]
    /// The checks through the router.
    public var checks: [CheckResult]
    public var finished_at: String
}

/// A multi-group roll: one group at a time, each out of the router while it rolls; stops at the first group
/// that does not verify, leaving the groups after it on the image they run.
public struct GroupsRollResult: Sendable, Codable {
    public var from: String
    public var to: String
    /// verified: every group runs the new image; else the outcome of the group that stopped the roll.
    public var outcome: RollOutcome
    public var groups: [RollResult]
    public var cause: String?
    public var finished_at: String
}

/// Step names prefixed with the group's name, so two groups' `preflight` lines tell themselves apart.
struct GroupReporter: Reporter {
    var base: Reporter
    var group: String
    func step(_ name: String, _ status: StepStatus, _ detail: String, elapsed: Duration) { base.step("\(group): \(name)", status, detail, elapsed: elapsed) }
    func progress(key: String, line: String, done: Bool) { base.progress(key: "\(group) \(key)", line: "\(group): \(line)", done: done) }
    func warning(_ text: String) { base.warning("\(group): \(text)") }
}

/// The router's worker list, over its HTTP control routes (vllm-router 0.1.17: no key; see RouterCommand).
public struct RouterControl: Sendable {
    public var probe: HTTPProbe
    public var baseURL: String
    public var timeout: Duration = .seconds(30)

    public init(probe: HTTPProbe, baseURL: String) {
        self.probe = probe
        self.baseURL = baseURL
    }

    func url(_ route: String, worker: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return baseURL + route + "?url=" + (worker.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
    }

    /// `GET /list_workers`: `{"urls": [...]}`.
    public func workers() async throws -> [String] {
        let r = try await probe.get(baseURL + "/list_workers", bearer: nil, timeout: timeout)
        guard r.status == 200, let obj = try? JSONSerialization.jsonObject(with: r.body) as? [String: Any], let urls = obj["urls"] as? [String] else {
            throw StepFailure(step: "router", node: nil, cause: "GET \(baseURL)/list_workers answered \(r.status): \(String(r.text.prefix(200)).escapingControls)", hint: nil, exitCode: .checkFailed)
        }
        return urls
    }

    /// `POST /remove_worker`: the router sends the worker nothing new; its requests in flight go on.
    public func remove(_ worker: String) async throws {
        let r = try await probe.post(url("/remove_worker", worker: worker), json: Data(), bearer: nil, timeout: timeout)
        guard r.status == 200 else {
            throw StepFailure(step: "router: remove", node: nil, cause: "the router answered \(r.status) to removing \(worker): \(String(r.text.prefix(200)).escapingControls)", hint: nil, exitCode: .checkFailed)
        }
    }

    /// `POST /add_worker`: answers once the worker's /health passes (400 when it is already in).
    public func add(_ worker: String, timeout: Duration = .seconds(120)) async throws {
        if try await workers().contains(worker) { return }
        let r = try await probe.post(url("/add_worker", worker: worker), json: Data(), bearer: nil, timeout: timeout)
        guard r.status == 200 else {
            throw StepFailure(step: "router: add", node: nil, cause: "the router answered \(r.status) to adding \(worker): \(String(r.text.prefix(200)).escapingControls)",
                              hint: "the group serves on its own at \(worker); `sous up` puts it back in the router", exitCode: .checkFailed)
        }
    }
}

/// `up` and `roll` over several groups behind the router.
public struct GroupsRunner: Sendable {
    /// Settings for every group (its deployment is the whole one).
    public var up: UpRunner
    /// How long a group taken out of the router may take to finish the requests it has.
    public var drainTimeout: Duration = .seconds(300)

    public init(_ up: UpRunner) { self.up = up }

    var d: Deployment { up.deployment }
    var inv: Inventory { up.deployment.inventory }
    var reporter: Reporter { up.reporter }

    func router() throws -> RouterCommand {
        guard let r = d.router else {
            throw UsageError("\(inv.file) forms \(d.groups.count) tensor-parallel groups but names no router to put in front of them",
                             hint: "add `router: {node: \(inv.head.name), port: 8080, image: <a pinned vllm-router image>}` to \(inv.file) (README, \"Several groups\")")
        }
        return r
    }

    func runner(for g: ServeGroup) -> UpRunner {
        var r = up
        r.deployment = d.group(g)
        r.reporter = GroupReporter(base: up.reporter, group: g.name)
        return r
    }

    static func only(_ g: ServeGroup, _ sessions: [String: NodeSession]) -> [String: NodeSession] {
        sessions.filter { name, _ in g.nodes.contains { $0.name == name } }
    }

    // MARK: up

    public func runUp() async throws -> GroupsUpResult {
        let router = try router()
        return try await withSessions(inv.nodes, transport: up.transport, reporter: reporter) { sessions in
            try await ClusterLock.with(sessions[inv.head.name]!, what: "up \(d.recipe.name) \(inv.image)", forceUnlock: up.forceUnlock,
                                       warn: { [reporter] in reporter.warning($0) }) { lock in
                var groups: [UpResult] = []
                for g in d.groups {
                    var r = try await runner(for: g).run(Self.only(g, sessions), lock: lock)
                    r.group = g.name
                    groups.append(r)
                }
                try await lock.renew(covering: .seconds(900))
                let (restarted, checks) = try await routerUp(router, session: sessions[router.node.name]!)
                let result = GroupsUpResult(cluster: inv.cluster, recipe: d.recipe.name, image: inv.image, router: router.baseURL, router_restarted: restarted,
                                            groups: groups, checks: checks, finished_at: ISO8601DateFormatter().string(from: Date()))
                if let w = await JournalOps.record(try JournalOps.line(event: .up, result), head: sessions[inv.head.name]!) { reporter.warning(w) }
                return result
            }
        }
    }

    /// The router: its image, its container running exactly the rendered command, /health 200 (every group
    /// healthy), every group in its worker list (a roll cut short leaves one out), then the checks through it.
    func routerUp(_ router: RouterCommand, session s: NodeSession) async throws -> (Bool, [CheckResult]) {
        let clock = ContinuousClock(), t = clock.now, node = router.node.name
        let (imageID, _) = try await UpRunner.ensureImage(router.spec.image, on: node, s, inventory: inv.file, stop: up.interruption, step: "router: pull")
        let wanted = DockerOps.currentLine(imageID: imageID, serveArgv: router.routerArgv)
        let restart = try await s.run(DockerOps.current(RouterCommand.container)).value != wanted
        if restart {
            _ = try await s.run(DockerOps.remove(RouterCommand.container))
            let r = try await s.run(RemoteCommand(router.dockerArgv, timeout: .seconds(120)))
            if !r.ok { throw StepFailure(step: "router: start", node: node, cause: r.tail(3), hint: "sous render --recipe \(d.recipe.name) --inventory \(inv.file) shows the router's command", exitCode: .checkFailed) }
        }
        // It starts once one group answers /health and checks the rest every 5 s.
        let deadline = clock.now + .seconds(120)
        while true {
            if up.interruptible { try up.interruption.check("router", state: "every group serves on its own; the router is starting") }
            if let h = try? await up.probe.get(router.baseURL + "/health", bearer: nil, timeout: .seconds(5)), h.status == 200 { break }
            if clock.now > deadline {
                throw StepFailure(step: "router: /health", node: node, cause: "no 200 from \(router.baseURL)/health within 120 s (it answers 503 while a group fails its health check)",
                                  logTail: (try? await s.run(DockerOps.logs(tail: 15, RouterCommand.container)))?.combined,
                                  hint: "`sous exec -i \(inv.file) --nodes \(node) -- docker logs --tail 50 \(RouterCommand.container)`", exitCode: .checkFailed)
            }
            reporter.progress(key: "router", line: "waiting \(Human.duration((clock.now - t).seconds)) for \(router.baseURL)/health", done: false)
            try await Task.sleep(for: up.pollInterval)
        }
        let control = RouterControl(probe: up.probe, baseURL: router.baseURL)
        let present = try await control.workers()
        let missing = router.workerURLs.filter { !present.contains($0) }
        for url in missing { try await control.add(url) }
        reporter.step("router", restart || !missing.isEmpty ? .changed : .ok,
                      (restart ? "started " : "") + "\(router.baseURL) on \(node) → " + router.workerURLs.joined(separator: ", ") + (missing.isEmpty ? "" : "; put back \(missing.joined(separator: ", "))"),
                      elapsed: clock.now - t)
        let checks = try await gate(router)
        return (restart, checks)
    }

    /// The checks `up` runs on a group, through the router: every group serves the same model at the same tp.
    func gate(_ router: RouterCommand) async throws -> [CheckResult] {
        let clock = ContinuousClock(), t = clock.now, tp = d.recipe.tensorParallelSize
        let checks = await Validator(probe: up.probe, baseURL: router.baseURL, model: d.recipe.servedModelName, key: up.key,
                                     sampling: d.recipe.sampling.map { ($0.key, $0.value.value) }, tensorParallel: tp,
                                     timeout: up.checkTimeout, toolChoices: d.recipe.toolChoices).run()
        if let f = checks.first(where: { !$0.passed }) {
            throw StepFailure(step: "router: verify: \(f.name)", node: router.node.name, cause: f.detail + (f.diagnosis.map { "\n  cause: \($0)" } ?? ""),
                              hint: "each group passed on its own: `sous validate --base-url \(router.baseURL) --model \(d.recipe.servedModelName)` shows every check through the router", exitCode: .checkFailed)
        }
        reporter.step("router: verify", .ok, "\(checks.count)/\(checks.count) checks through \(router.baseURL)", elapsed: clock.now - t)
        return checks
    }

    // MARK: roll

    public func runRoll(to newImage: String) async throws -> GroupsRollResult {
        let router = try router()
        let newDeployment = try Deployment.make(recipe: d.recipe, inventory: inv, image: newImage)
        return try await withSessions(inv.nodes, transport: up.transport, reporter: reporter) { sessions in
            try await ClusterLock.with(sessions[inv.head.name]!, what: "roll \(d.groups.count) groups → \(newImage)", forceUnlock: up.forceUnlock,
                                       warn: { [reporter] in reporter.warning($0) }) { lock in
                let result = try await roll(router, to: newDeployment, sessions: sessions, lock: lock)
                if let w = await JournalOps.record(try JournalOps.line(event: .roll, result), head: sessions[inv.head.name]!) { reporter.warning(w) }
                return result
            }
        }
    }

    func roll(_ router: RouterCommand, to newDeployment: Deployment, sessions: [String: NodeSession], lock: ClusterLock.Holder) async throws -> GroupsRollResult {
        let control = RouterControl(probe: up.probe, baseURL: router.baseURL)
        let newImage = newDeployment.inventory.image
        var rolled: [RollResult] = []
        var cause: String?
        for (g, url) in zip(d.groups, router.workerURLs) {
            let clock = ContinuousClock(), t = clock.now
            let own = Self.only(g, sessions), head = sessions[g.head.name]!
            let current = try await head.run(DockerOps.configImage())
            let oldImage = current.ok ? current.value : inv.image
            // Out of the router, then its requests in flight finish, then nothing reaches it but sous.
            try await control.remove(url)
            var roll = RollRunner(recipe: d.recipe, inventory: d.group(g).inventory, newImage: newImage, transport: up.transport, probe: up.probe, key: up.key,
                                  reporter: GroupReporter(base: reporter, group: g.name), engineTimeout: up.engineTimeout, checkTimeout: up.checkTimeout, forceUnlock: false)
            roll.pollInterval = up.pollInterval
            roll.interruption = up.interruption
            var result: RollResult
            do {
                try await drain(g, head: url)
                reporter.step("\(g.name): out", .changed, "\(url) out of the router, its requests finished", elapsed: clock.now - t)
                result = try await roll.roll(from: oldImage, newDeployment: newDeployment.group(g), sessions: own, lock: lock)
            } catch {
                // Nothing was switched (a failed pre-pull, a drain that did not end, Ctrl-C before the switch):
                // the group still serves its old image, so it goes back in before the error is told.
                try? await control.add(url)
                throw error
            }
            result.group = g.name
            rolled.append(result)
            if result.outcome != .rollbackFailed {
                let back = clock.now
                try await control.add(url)
                reporter.step("\(g.name): in", .changed, "\(url) back in the router on \(result.outcome == .verified ? newImage : oldImage)", elapsed: clock.now - back)
            }
            if result.outcome != .verified {
                cause = "\(g.name): " + (result.cause ?? result.outcome.rawValue)
                break
            }
        }
        let outcome = rolled.last?.outcome ?? .verified
        if outcome == .verified { _ = try await gate(router) }
        return GroupsRollResult(from: rolled.first?.from ?? inv.image, to: newImage, outcome: outcome, groups: rolled, cause: cause,
                                finished_at: ISO8601DateFormatter().string(from: Date()))
    }

    /// Waits until the group's head has no request running or waiting (vLLM's /metrics gauges
    /// `vllm:num_requests_running` and `vllm:num_requests_waiting`, summed over its engines).
    func drain(_ g: ServeGroup, head url: String) async throws {
        let clock = ContinuousClock(), deadline = clock.now + drainTimeout
        while true {
            if let r = try? await up.probe.get(url + "/metrics", bearer: up.key, timeout: .seconds(10)), r.status == 200,
               let busy = Self.requestsInFlight(r.text), busy == 0 { return }
            if clock.now > deadline {
                throw StepFailure(step: "\(g.name): drain", node: g.head.name, cause: "requests still in flight on \(url) after \(drainTimeout) out of the router (or no /metrics)",
                                  hint: "it is out of the router and still serves them; `sous up` puts it back", exitCode: .checkFailed)
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// The sum of vLLM's running and waiting gauges in a Prometheus text page; nil when it has neither.
    static func requestsInFlight(_ metrics: String) -> Int? {
        var total = 0.0, seen = false
        for line in metrics.split(separator: "\n") where ["vllm:num_requests_running", "vllm:num_requests_waiting"].contains(where: { line.hasPrefix($0 + "{") || line.hasPrefix($0 + " ") }) {
            guard let value = line.split(separator: " ").last.flatMap({ Double($0) }), value.isFinite, value >= 0 else { continue }
            total += value
            seen = true
        }
        return seen ? Int(min(total, 1e9)) : nil
    }
}
