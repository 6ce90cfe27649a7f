import Foundation

/// The result of a successful `sous up`.
public struct UpResult: Sendable, Encodable {
    /// The group, when the deployment has several.
    public var group: String? = nil
    public var cluster: String
    public var recipe: String
    public var recipe_digest: String
    public var image: String
    public var image_id: String
    public var fingerprint: String?
    public var restarted: Bool
    /// Seconds from starting the first rank to /health 200 (only when `up` started the engine).
    public var ready_s: Double?
    /// Seconds to the first chunk of the first completion after /health 200 (a streamed one-token request).
    public var first_token_s: Double?
    public var checks: [CheckResult]
    /// The small agent session of the gate (`sessionTurns` turns); nil when it was off.
    public var session: [AgentSession.Turn]?
    public var steps: [StepRecord]
    public var finished_at: String
}

/// Brings a cluster up: the steps of `UpRunner.steps`, each first checking whether it is already done, so a
/// second run changes nothing. `sous plan` prints the same list.
public struct UpRunner: Sendable {
    public var deployment: Deployment
    public var transport: Transport
    public var probe: HTTPProbe
    public var key: Secret?
    public var reporter: Reporter
    /// How long the engine may take from start to a healthy /health.
    public var engineTimeout: Duration
    public var pollInterval: Duration
    /// How long each verification request may take.
    public var checkTimeout: Duration
    /// Start a recipe that `fit` says does not fit.
    public var force = false
    /// Download and copy the checkpoint when a node lacks it (else stop and say so).
    public var fetch = true
    /// For gated models: reaches the head only as a 0600 file.
    public var hfToken: Secret?
    /// Stop at the next safe point on Ctrl-C / SIGTERM (a roll's rollback runs with this off).
    public var interruptible = true
    /// Remove a stale cluster lock first.
    public var forceUnlock = false
    /// The gate's agent session after the checks: this many streamed turns (0: none), each offering `sessionTools` tools.
    public var sessionTurns = 2
    public var sessionTools = 4
    /// Where Ctrl-C is heard (the process's own; tests bring theirs).
    public var interruption: Interruption = .shared

    public init(deployment: Deployment, transport: Transport, probe: HTTPProbe, key: Secret?, reporter: Reporter,
                engineTimeout: Duration = .seconds(1800), pollInterval: Duration = .milliseconds(250), checkTimeout: Duration = .seconds(120)) {
        self.checkTimeout = checkTimeout
        self.deployment = deployment
        self.transport = transport
        self.probe = probe
        self.key = key
        self.reporter = reporter
        self.engineTimeout = engineTimeout
        self.pollInterval = pollInterval
    }

    var inv: Inventory { deployment.inventory }

    /// Opens one session per node, takes the cluster lock, runs the steps, journals the result, releases the lock.
    public func run() async throws -> UpResult {
        try await withSessions(inv.nodes, transport: transport, reporter: reporter) { sessions in
            try await ClusterLock.with(sessions[inv.head.name]!, what: "up \(deployment.recipe.name) \(inv.image)", forceUnlock: forceUnlock,
                                       warn: { [reporter] in reporter.warning($0) }) { lock in
                let result = try await run(sessions, lock: lock)
                if let w = await JournalOps.record(try JournalOps.line(event: .up, result), head: sessions[inv.head.name]!) { reporter.warning(w) }
                return result
            }
        }
    }

    /// Runs the steps on sessions someone else opened (a roll, a key rotation), under their lock. Throws
    /// `StepRunner.StepsFailed` with the records of the steps that ran.
    public func run(_ sessions: [String: NodeSession], lock: ClusterLock.Holder?) async throws -> UpResult {
        let context = try UpContext(runner: self, sessions: sessions)
        var records = try await StepRunner(reporter: reporter, interruptible: interruptible, lock: lock, interruption: interruption).run(Self.steps(deployment), context)
        records.removeAll { $0.step == "journal" }
        return UpResult(group: nil, cluster: inv.cluster, recipe: deployment.recipe.name,
                        recipe_digest: String(sha256Hex(context.commands.map { (try? ShellQuote.join($0.dockerArgv)) ?? "" }.joined(separator: "\n")).prefix(16)),
                        image: inv.image, image_id: context.imageID, fingerprint: context.fingerprint, restarted: context.restarted,
                        ready_s: context.readySeconds, first_token_s: context.firstTokenSeconds,
                        checks: context.checks, session: context.session, steps: records, finished_at: ISO8601DateFormatter().string(from: Date()))
    }
}

/// What the steps of one `up` share: the sessions and what earlier steps found.
final class UpContext: @unchecked Sendable {
    let runner: UpRunner
    let sessions: [String: NodeSession]
    let commands: [NodeCommand]
    let byName: [String: NodeCommand]
    var checkpoint: CheckpointStatus?
    var imageID = ""
    var envChanged = false
    /// nil until the first start step decided whether the ranks must restart.
    var mustStart: Bool?
    var restarted = false
    /// When the first rank was started, and what the wait then measured.
    var startedAt: ContinuousClock.Instant?
    var readySeconds: Double?
    var firstTokenSeconds: Double?
    var fingerprint: String?
    var checks: [CheckResult] = []
    var session: [AgentSession.Turn]?

    init(runner: UpRunner, sessions: [String: NodeSession]) throws {
        self.runner = runner
        self.sessions = sessions
        var d = runner.deployment
        d.engineReadyBudget = runner.engineTimeout
        commands = try Renderer(d).nodes()
        byName = Dictionary(uniqueKeysWithValues: commands.map { ($0.node.name, $0) })
    }

    var d: Deployment { runner.deployment }
    var inv: Inventory { runner.deployment.inventory }
    func session(_ n: NodeSpec) -> NodeSession { sessions[n.name]! }

    /// Runs one command on one node; a lost connection fails `step` naming the node.
    func run(_ node: NodeSpec, _ command: RemoteCommand, step: String) async throws -> CommandResult {
        do { return try await session(node).run(command) } catch { throw StepFailure.wrap(error, step: step, node: node.name) }
    }

    /// The engine log's last lines on `node`, for a failure message.
    func logTail(_ node: NodeSpec, _ lines: Int) async -> String? {
        (try? await session(node).run(DockerOps.logs(tail: lines)))?.combined
    }

    /// Ctrl-C stops a stoppable command at once only while the operation may be interrupted.
    var stopsOn: Interruption? { runner.interruptible ? runner.interruption : nil }

    func everyNode<T: Sendable>(_ step: String, _ body: @escaping @Sendable (NodeSpec, NodeSession) async throws -> T) async throws -> [String: T] {
        try await onEveryNode(inv.nodes, sessions, step: step, body)
    }
}

extension UpRunner {
    typealias UpStep = Step<UpContext>

    static let beforeStart = "nothing was restarted: what ran before still runs; `sous up` again continues"
    static let afterStart = "the engine containers keep starting; `sous up` again waits for them, `sous status` shows them"

    /// The steps of `sous up`, in order. `sous plan` prints their `plan`; the runner applies them.
    static func steps(_ d: Deployment) -> [UpStep] {
        let plans = Dictionary(uniqueKeysWithValues: UpPlan.describe(d).map { ($0.id, $0) })
        func step(_ id: String, budget: Duration, leaves: String?, _ apply: @escaping @Sendable (UpContext) async throws -> (StepStatus, String)) -> UpStep {
            UpStep(plan: plans[id]!, budget: budget, leaves: leaves, apply: apply)
        }
        var list: [UpStep] = [
            step("preflight", budget: .seconds(60), leaves: beforeStart, preflight),
            step("model", budget: .seconds(6 * 3600), leaves: beforeStart, model),
            step("fit", budget: .seconds(60), leaves: beforeStart, fit),
            step("harden.sshd", budget: .seconds(300), leaves: beforeStart) { c in try await hardenStep(c) { try await Harden.sshd($0, check: false) } },
            step("harden.earlyoom", budget: .seconds(900), leaves: beforeStart) { c in try await hardenStep(c) { try await Harden.earlyoom($0, check: false) } },
            step("pull", budget: .seconds(3700), leaves: beforeStart, pull),
            step("env", budget: .seconds(120), leaves: beforeStart, env),
        ]
        if d.inventory.nodes.count > 1 { list.append(step("start.workers", budget: .seconds(900), leaves: beforeStart, startWorkers)) }
        // Between the workers and the head is no safe point: a head left stopped would be half of a restart.
        list.append(step("start.head", budget: .seconds(900), leaves: d.inventory.nodes.count > 1 ? nil : beforeStart, startHead))
        list += [
            step("wait", budget: .seconds(300), leaves: afterStart, wait),
            step("verify", budget: .seconds(900), leaves: afterStart, verify),
            step("journal", budget: .seconds(60), leaves: nil) { _ in (.ok, JournalOps.path) },
        ]
        return list
    }

    /// Read-only; stops at the first node that cannot run the engine.
    static func preflight(_ c: UpContext) async throws -> (StepStatus, String) {
        let peers = c.inv.nodes.map(\.interconnectIP), iface = c.inv.interface, f = c.d.engine.gpuMemoryUtilization, stop = c.stopsOn
        _ = try await c.everyNode("preflight") { node, s in
            let r = try await s.run(PreflightOps.check(interface: iface, memoryFraction: f, peers: peers.filter { $0 != node.interconnectIP }).stoppable(by: stop))
            if !r.ok { throw StepFailure(step: "preflight", node: node.name, cause: r.tail(), hint: "fix it on \(node.name), then run sous up again", exitCode: .checkFailed) }
        }
        return (.ok, "sudo, docker, GPU, interconnect, memory")
    }

    /// The checkpoint, present and complete on every node (downloaded once, copied over the interconnect),
    /// and a forced quantization that agrees with it; before pulling or starting anything.
    static func model(_ c: UpContext) async throws -> (StepStatus, String) {
        let d = c.d, reporter = c.runner.reporter
        let sync = ModelSync(deployment: d, hfToken: c.runner.hfToken, onProgress: { reporter.progress($0) })
        let models = try await sync.ensure(c.sessions, fetch: c.runner.fetch)
        if let problem = sync.inconsistency(models) { throw problem }
        let actions = models.compactMap { r in r.action.map { "\(r.node) \($0)" } }
        let ckpt = models.first { $0.node == c.inv.head.name }!.status
        c.checkpoint = ckpt
        if case .method(let forced, _) = d.recipe.quantization, let found = ckpt.quantization,
           !Checkpoint.quantizationAgrees(forced: forced, checkpoint: found.method) {
            throw StepFailure(step: "model", node: c.inv.head.name, cause: "the recipe forces --quantization \(forced), but the checkpoint says \(found.method) (\(found.source))",
                              hint: "write `quantization: auto` in \(d.recipe.file): vLLM reads the method from the checkpoint", exitCode: .badInput)
        }
        return (actions.isEmpty ? .ok : .changed,
                "\(d.recipe.model)@\(ckpt.revision?.prefix(12) ?? "?") \(Human.bytes(ckpt.bytes)) on \(models.count) nodes" + (actions.isEmpty ? "" : "; " + actions.joined(separator: "; ")))
    }

    static func fit(_ c: UpContext) async throws -> (StepStatus, String) {
        guard let ckpt = c.checkpoint, let input = ckpt.fit else { return (.skipped, "the checkpoint has no model.safetensors.index.json to size it") }
        let d = c.d
        let fit = Fit.compute(input, tp: d.recipe.tensorParallelSize, engine: d.engine, profile: c.inv.profile)
        if fit.verdict == .doesNotFit && !c.runner.force {
            throw StepFailure(step: "fit", node: c.inv.head.name, cause: fit.messages.joined(separator: "; "),
                              hint: "sous fit --recipe \(d.recipe.name) --inventory \(c.inv.file) shows the budget; --force starts it anyway", exitCode: .checkFailed)
        }
        var detail = "\(fit.verdict.rawValue): \(fit.kv_tokens) KV tokens per rank; quantization \(ckpt.quantization?.method ?? "none") from the checkpoint"
        if let w = Checkpoint.kvCacheWarning(ckpt.quantization, recipeKVDtype: d.engine.kvCacheDtype) { detail += "; warning: \(w)" }
        return (.ok, detail)
    }

    static func hardenStep(_ c: UpContext, _ one: @escaping @Sendable (NodeSession) async throws -> StepRecord) async throws -> (StepStatus, String) {
        let records = try await c.everyNode("harden") { _, s in try await one(s) }
        let changed = c.inv.nodes.filter { records[$0.name]!.status != .ok }.map(\.name)
        return (changed.isEmpty ? .ok : .changed, (changed.isEmpty ? "" : "changed on \(changed.joined(separator: ", ")): ") + records[c.inv.head.name]!.detail)
    }

    /// The image on a node: its local ID, pulled first when the node lacks it (true), a failed pull with Docker's
    /// words and what to do about them.
    static func ensureImage(_ image: String, on node: String, _ s: NodeSession, inventory: String, stop: Interruption?, step: String) async throws -> (String, Bool) {
        let have = try await s.run(DockerOps.imageID(image))
        if have.ok { return (have.value, false) }
        let pull = try await s.run(DockerOps.pull(image).stoppable(by: stop))
        if !pull.ok { throw StepFailure(step: step, node: node, cause: pull.tail(3), hint: DockerOps.pullHint(pull.stderrText + pull.stdoutText, node: node, inventory: inventory, image: image), exitCode: .checkFailed) }
        return (try await s.run(DockerOps.imageID(image)).value, true)
    }

    /// Pulls in parallel; the same image ID everywhere.
    static func pull(_ c: UpContext) async throws -> (StepStatus, String) {
        let inv = c.inv, stop = c.stopsOn
        let ids = try await c.everyNode("pull") { node, s -> (String, Bool) in
            try await ensureImage(inv.image, on: node.name, s, inventory: inv.file, stop: stop, step: "pull")
        }
        let distinct = Set(ids.values.map(\.0))
        guard distinct.count == 1, let imageID = distinct.first, !imageID.isEmpty else {
            throw StepFailure(step: "pull", node: nil, cause: "the nodes hold different image IDs for \(inv.image): " + ids.map { "\($0.key) \($0.value.0.prefix(19))" }.sorted().joined(separator: ", "),
                              hint: "pin the image by digest in \(inv.file), then `sous exec -i \(inv.file) -- docker pull \(inv.image)`", exitCode: .checkFailed)
        }
        c.imageID = imageID
        return (ids.values.contains { $0.1 } ? .changed : .ok, "\(inv.image) \(imageID.prefix(19))")
    }

    /// Env files: 0600, the key on the head only; uploaded only when the content differs.
    static func env(_ c: UpContext) async throws -> (StepStatus, String) {
        let byName = c.byName, key = c.runner.key
        // Per node: (written, the engine must restart for it).
        let changed = try await c.everyNode("env") { node, s -> (Bool, Bool) in
            let text = try byName[node.name]!.envFile(secret: key)
            let state = try await s.run(EnvFileOps.state())
            if EnvFileOps.matches(state, text: text) { return (false, false) }
            // Another --timeout changes only the engine-ready timeout: written for the next start, no restart now.
            let restart = !EnvFileOps.matchesButReadyTimeout(state, text: text)
            let dir = try await s.run(EnvFileOps.makeStateDir(owner: node.user))
            if !dir.ok { throw StepFailure(step: "env", node: node.name, cause: dir.tail(), hint: nil, exitCode: .checkFailed) }
            try await s.upload(Data(text.utf8), to: NodePaths.envFile, mode: 0o600, sudo: false)
            return (true, restart)
        }
        c.envChanged = changed.values.contains { $0.1 }
        let written = changed.values.contains { $0.0 }
        return (written ? .changed : .ok, NodePaths.envFile + (written && !c.envChanged ? " (only \(EngineReady.variable): no restart for it)" : ""))
    }

    /// Decides once whether any rank must restart: every rank must run exactly the rendered command from the
    /// pulled image, with an unchanged env file, and the group must answer /health (ranks that run the right command
    /// but do not serve are a group that did not start over together: a rank 0 waiting for a rank left from before
    /// waits for ever, docs/research/vllm-rank-failure.md). If not, removes every container, the head first.
    static func decideStart(_ c: UpContext) async throws -> Bool {
        if let decided = c.mustStart { return decided }
        let byName = c.byName, imageID = c.imageID
        let current = try await c.everyNode("inspect") { node, s -> Bool in
            try await s.run(DockerOps.current()).value == DockerOps.currentLine(imageID: imageID, serveArgv: byName[node.name]!.containerArgs)
        }
        let r = c.runner
        let serving = current.values.allSatisfy { $0 } ? (try? await r.probe.get(c.inv.baseURL + "/health", bearer: nil, timeout: .seconds(5)))?.status == 200 : true
        if !serving { r.reporter.warning("every rank runs the rendered command but \(c.inv.baseURL)/health does not answer 200: starting the group over together") }
        let must = c.envChanged || !current.values.allSatisfy { $0 } || !serving
        if must {
            for node in c.inv.ranked.map(\.node) { _ = try await c.run(node, DockerOps.remove(), step: "start") }
        }
        c.mustStart = must
        return must
    }

    static func start(_ c: UpContext, _ node: NodeSpec) async throws {
        if c.startedAt == nil { c.startedAt = ContinuousClock.now }
        let r = try await c.run(node, DockerOps.run(c.byName[node.name]!), step: node.name == c.inv.head.name ? "start.head" : "start.workers")
        if !r.ok {
            throw StepFailure(step: node.name == c.inv.head.name ? "start.head" : "start.workers", node: node.name, cause: r.tail(3),
                              hint: "sous render --recipe \(c.d.recipe.name) --inventory \(c.inv.file) --node \(node.name)", exitCode: .checkFailed)
        }
    }

    static func startWorkers(_ c: UpContext) async throws -> (StepStatus, String) {
        guard try await decideStart(c) else { return (.ok, "every rank already runs the rendered command") }
        let workers = c.inv.ranked.filter { $0.rank > 0 }.map(\.node)
        for node in workers.reversed() { try await start(c, node) }
        c.restarted = true
        return (.changed, "started " + workers.map(\.name).joined(separator: ", "))
    }

    static func startHead(_ c: UpContext) async throws -> (StepStatus, String) {
        guard try await decideStart(c) else { return (.ok, "every rank already runs the rendered command") }
        try await start(c, c.inv.head)
        c.restarted = true
        return (.changed, "started \(c.inv.head.name)")
    }

    /// Waits in layers: every container running (an exited one stops here with its log), then /health 200,
    /// with a progress line (time waited, the head's latest log line).
    static func wait(_ c: UpContext) async throws -> (StepStatus, String) {
        let r = c.runner, inv = c.inv, clock = ContinuousClock()
        let start = clock.now, deadline = start + r.engineTimeout
        var lastLog: ContinuousClock.Instant?
        while true {
            if r.interruptible { try r.interruption.check("wait", state: afterStart) }
            for node in inv.ranked.map(\.node) {
                let state = try await c.run(node, DockerOps.state(), step: "wait")
                if !DockerOps.isRunning(state, fresh: c.restarted) {
                    let f = state.value.split(separator: " ")
                    for n in inv.nodes { _ = try? await c.session(n).run(DockerOps.noRestart()) }
                    throw StepFailure(step: "wait: container running", node: node.name,
                                      cause: "the engine container exited (" + (f.count == 3 ? "exit code \(f[2]); \(f[0]), \(f[1]) restart\(f[1] == "1" ? "" : "s")" : state.value) + ")",
                                      logTail: await c.logTail(node, 15),
                                      hint: "read the log above (the ranks' restart policy is off now, so it does not crash in a loop; `sous up` sets it again); `sous render --recipe \(c.d.recipe.name) --inventory \(inv.file) --node \(node.name)` shows what it ran", exitCode: .checkFailed)
                }
            }
            if let h = try? await r.probe.get(inv.baseURL + "/health", bearer: nil, timeout: .seconds(5)), h.status == 200 {
                c.readySeconds = c.startedAt.map { ((clock.now - $0).seconds * 100).rounded() / 100 }
                break
            }
            // What a person would watch with `docker logs -f`: the head's latest line, every 2 s.
            if lastLog.map({ clock.now - $0 >= .seconds(2) }) ?? true {
                lastLog = clock.now
                let line = (await c.logTail(inv.head, 1) ?? "").trimmingCharacters(in: .whitespacesAndNewlines).prefix(100)
                r.reporter.progress(key: "wait", line: "waiting \(Human.duration((clock.now - start).seconds)) of \(Human.duration(r.engineTimeout.seconds)) for /health; \(inv.head.name): \(line)", done: false)
            }
            if clock.now > deadline {
                throw StepFailure(step: "wait: /health", node: inv.head.name, cause: "no 200 from \(inv.baseURL)/health within \(r.engineTimeout) (a rank that never joins keeps the API down)",
                                  logTail: await c.logTail(inv.head, 15),
                                  hint: "check every node's log: `sous exec -i \(inv.file) -- docker logs --tail 20 \(NodePaths.container)`", exitCode: .checkFailed)
            }
            try await Task.sleep(for: r.pollInterval)
        }
        // The first real completion after a start: what the first agent waits for its first token.
        let first = !c.restarted ? nil : try? await r.probe.post(inv.baseURL + "/v1/chat/completions", json: AgentChecks.pingRequest(model: c.d.recipe.servedModelName, stream: true),
                                            bearer: r.key, timeout: r.checkTimeout)
        c.firstTokenSeconds = first.flatMap { $0.status == 200 ? $0.firstByte : nil }.map { ($0.seconds * 1000).rounded() / 1000 }
        return (.ok, "containers running, /health 200" + (c.readySeconds.map { ", ready \(Human.duration($0)) after the start" } ?? "")
                     + (c.firstTokenSeconds.map { String(format: ", first token %.2f s", $0) } ?? ""))
    }

    /// Verifies like an agent: model list (and 401 without the key), fingerprint, the four checks.
    static func verify(_ c: UpContext) async throws -> (StepStatus, String) {
        let r = c.runner, inv = c.inv, d = c.d, tp = d.recipe.tensorParallelSize
        let version = inv.vllmVersion
        let hasFingerprint = version.map { ParserCatalog.builtin.hasSystemFingerprint($0) } ?? true
        let checks = await Validator(probe: r.probe, baseURL: inv.baseURL, model: d.recipe.servedModelName, key: r.key,
                                     sampling: d.recipe.sampling.map { ($0.key, $0.value.value) },
                                     tensorParallel: hasFingerprint ? tp : nil, timeout: r.checkTimeout, toolChoices: d.recipe.toolChoices).run()
        c.checks = checks
        c.fingerprint = hasFingerprint ? checks.first { $0.name == "fingerprint tp\(tp)" && $0.passed }?.detail : nil
        var topology = ""
        if !hasFingerprint {
            // No fingerprint before vLLM 0.21: the topology comes from what every rank was started with …
            for node in inv.nodes {
                let args = try await c.run(node, DockerOps.args(), step: "verify: topology")
                if !args.stdoutText.contains("\"--tensor-parallel-size\",\"\(tp)\"") {
                    throw StepFailure(step: "verify: topology", node: node.name, cause: "the rank does not run --tensor-parallel-size \(tp)", hint: nil, exitCode: .checkFailed)
                }
            }
            // … and from what the engine itself parsed: vLLM logs its non-default arguments at start.
            let line = try await c.run(inv.head, DockerOps.startupArgsLine(), step: "verify: topology")
            if line.ok, !line.stdoutText.contains("'tensor_parallel_size': \(tp)") {
                throw StepFailure(step: "verify: topology", node: inv.head.name, cause: "the engine's startup log does not show tensor_parallel_size \(tp): \(line.stdoutText.prefix(300))", hint: nil, exitCode: .checkFailed)
            }
            topology = "tp verified from docker inspect on every node" + (line.ok ? " and the head's startup log" : " (no `non-default args` line in the head's log)")
        }
        let failed = checks.filter { !$0.passed }
        if let f = failed.first {
            throw StepFailure(step: "verify: \(f.name)", node: inv.head.name, cause: f.detail + (f.diagnosis.map { "\n  cause: \($0)" } ?? ""),
                              logTail: await c.logTail(inv.head, 10), hint: "sous validate --base-url \(inv.baseURL) --model \(d.recipe.servedModelName) shows every check", exitCode: .checkFailed)
        }
        var sessionNote = ""
        if r.sessionTurns > 0 {
            // A small agent session: turns that build on each other, streamed, with a catalogue of tools.
            let turns = await AgentSession.run(probe: r.probe, v1: inv.baseURL + "/v1", model: d.recipe.servedModelName, key: r.key,
                                               sampling: d.recipe.sampling.map { ($0.key, $0.value.value) }, turns: r.sessionTurns, tools: r.sessionTools, timeout: r.checkTimeout)
            c.session = turns
            if let bad = turns.first(where: { !$0.passed }) {
                throw StepFailure(step: "verify: session turn \(bad.turn)", node: inv.head.name, cause: bad.detail + (bad.diagnosis.map { "\n  cause: \($0)" } ?? ""),
                                  logTail: await c.logTail(inv.head, 10),
                                  hint: "sous validate --base-url \(inv.baseURL) --model \(d.recipe.servedModelName) --session --turns \(r.sessionTurns) --tools \(r.sessionTools) replays it", exitCode: .checkFailed)
            }
            sessionNote = ", a \(r.sessionTurns)-turn session with \(r.sessionTools) tools"
        }
        return (.ok, "\(checks.count)/\(checks.count) checks" + sessionNote + (hasFingerprint ? "" : "; vLLM \(version!) has no system_fingerprint: \(topology)"))
    }
}
