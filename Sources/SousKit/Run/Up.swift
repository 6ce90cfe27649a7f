import Foundation

/// Progress of a long operation, one line per step.
public protocol Reporter: Sendable {
    func step(_ name: String, _ status: StepStatus, _ detail: String, elapsed: Duration)
    /// How something that waits is going (a transfer's bytes, the engine's load): the latest line per key.
    /// `done` marks the last line of that thing (always shown).
    func progress(key: String, line: String, done: Bool)
}

extension Reporter {
    public func progress(key: String, line: String, done: Bool) {}
    public func progress(_ p: TransferProgress) { progress(key: p.node + " " + p.phase, line: p.line, done: p.total.map { p.done >= $0 } ?? false) }
}

public enum StepStatus: String, Sendable, Encodable {
    case ok, changed, failed, skipped
}

/// A step's outcome, for the report and the journal.
public struct StepRecord: Sendable, Encodable {
    public var step: String
    public var status: StepStatus
    public var detail: String
    public var seconds: Double
}

/// `sous up` failed: the step, the node, the cause, that node's log, and the next command.
public struct UpFailure: SousFailure {
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
    public static func unreachable(_ node: NodeSpec, _ e: any Error) -> UpFailure {
        UpFailure(step: "connect", node: node.name, cause: (e as? SousFailure)?.message ?? "\(e)", hint: (e as? SousFailure)?.hint, exitCode: .unreachable)
    }

    public var message: String {
        var m = "\(step) failed" + (node.map { " on \($0)" } ?? "") + ": \(cause)"
        if let logTail, !logTail.isEmpty { m += "\n--- last lines of \(node ?? "the") container log ---\n\(logTail)" }
        return m
    }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The result of a successful `sous up`.
public struct UpResult: Sendable, Encodable {
    public var cluster: String
    public var recipe: String
    public var recipe_digest: String
    public var image: String
    public var image_id: String
    public var fingerprint: String?
    public var restarted: Bool
    public var checks: [CheckResult]
    public var steps: [StepRecord]
    public var finished_at: String
}

/// Brings a cluster up: preflight, pull, env files, workers then head, then waits in layers and verifies
/// like an agent. Every step first checks whether it is already done, so a second run changes nothing.
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
    var baseURL: String { "http://\(inv.head.host.contains(":") ? "[\(inv.head.host)]" : inv.head.host):\(inv.port)" }

    final class Steps: @unchecked Sendable {
        var records: [StepRecord] = []
        let lock = NSLock()
        func add(_ r: StepRecord) { lock.lock(); records.append(r); lock.unlock() }
    }

    public func run() async throws -> UpResult {
        let steps = Steps()
        let clock = ContinuousClock()
        func record(_ name: String, _ status: StepStatus, _ detail: String, _ start: ContinuousClock.Instant) {
            let elapsed = clock.now - start
            steps.add(StepRecord(step: name, status: status, detail: detail, seconds: (elapsed.seconds * 1000).rounded() / 1000))
            reporter.step(name, status, detail, elapsed: elapsed)
        }
        let commands = try Renderer(deployment).nodes()
        let byName = Dictionary(uniqueKeysWithValues: commands.map { ($0.node.name, $0) })

        // Connect to every node once; the sessions are reused for the whole operation and closed at its end.
        let t0 = clock.now
        return try await withSessions(inv.nodes, transport: transport, onUnreachable: { node, e in
            record("connect", .failed, node.name, t0)
            throw UpFailure.unreachable(node, e)
        }) { sessions in
            record("connect", .ok, "\(sessions.count) nodes", t0)
            var result = try await proceed(sessions, commands: commands, byName: byName, record: record)
            result.steps = steps.records
            try await journal(result, head: sessions[inv.head.name]!)
            return result
        }
    }

    func proceed(_ sessions: [String: NodeSession], commands: [NodeCommand], byName: [String: NodeCommand],
                 record: (String, StepStatus, String, ContinuousClock.Instant) -> Void) async throws -> UpResult {
        let clock = ContinuousClock()
        var t = clock.now

        // Preflight: read-only; stops at the first node that cannot run the engine.
        let peers = inv.nodes.map(\.interconnectIP)
        let gmu = deployment.engine.gpuMemoryUtilization
        try await each(sessions, step: "preflight") { node, s in
            let script = """
            sudo -n true 2>/dev/null || { echo 'sudo: a password is required'; exit 11; }
            command -v docker >/dev/null && docker version >/dev/null 2>&1 || { echo 'docker is missing or not usable without a password (is the user in the docker group?)'; exit 12; }
            nvidia-smi -L 2>/dev/null | grep -q '^GPU' || { echo 'no GPU visible to nvidia-smi'; exit 13; }
            for ip in \(peers.filter { $0 != node.interconnectIP }.joined(separator: " ")); do
              timeout 3 bash -c ": > /dev/tcp/$ip/22" 2>/dev/null || { echo "cannot reach the interconnect address $ip on \(inv.interface)"; exit 14; }
            done
            awk -v f=\(gmu) '/^MemTotal/ {t=$2} /^MemAvailable/ {a=$2} END { if (a < f * t) { printf "only %.0f GiB of %.0f GiB free; the recipe takes %.0f%%\\n", a/1048576, t/1048576, f*100; exit 15 } }' /proc/meminfo
            """
            let r = try await s.run(.shell(script, timeout: .seconds(30)))
            if !r.ok { throw UpFailure(step: "preflight", node: node.name, cause: r.tail(), hint: "fix it on \(node.name), then run sous up again", exitCode: .checkFailed) }
        }
        record("preflight", .ok, "sudo, docker, GPU, interconnect, memory", t)

        // The checkpoint: present and complete on every node (downloaded once, copied over the interconnect),
        // a forced quantization that agrees with it, and a recipe that fits the memory budget; all before
        // pulling or starting anything.
        t = clock.now
        let sync = ModelSync(deployment: deployment, hfToken: hfToken, onProgress: { [reporter] in reporter.progress($0) })
        let models = try await sync.ensure(sessions, fetch: fetch)
        if let problem = sync.inconsistency(models) { record("model", .failed, problem.cause, t); throw problem }
        let actions = models.compactMap { r in r.action.map { "\(r.node) \($0)" } }
        let ckpt = models.first { $0.node == inv.head.name }!.status
        record("model", actions.isEmpty ? .ok : .changed,
               "\(deployment.recipe.model)@\(ckpt.revision?.prefix(12) ?? "?") \(Human.bytes(ckpt.bytes)) on \(models.count) nodes" + (actions.isEmpty ? "" : "; " + actions.joined(separator: "; ")), t)
        t = clock.now
        if case .method(let forced, _) = deployment.recipe.quantization, let found = ckpt.quantization,
           !Checkpoint.quantizationAgrees(forced: forced, checkpoint: found.method) {
            record("fit", .failed, "quantization", t)
            throw UpFailure(step: "checkpoint", node: inv.head.name, cause: "the recipe forces --quantization \(forced), but the checkpoint says \(found.method) (\(found.source))",
                            hint: "write `quantization: auto` in \(deployment.recipe.file): vLLM reads the method from the checkpoint", exitCode: .badInput)
        }
        if let input = ckpt.fit {
            let fit = Fit.compute(input, tp: deployment.recipe.tensorParallelSize, engine: deployment.engine, profile: inv.profile)
            if fit.verdict == .doesNotFit && !force {
                record("fit", .failed, fit.verdict.rawValue, t)
                throw UpFailure(step: "fit", node: inv.head.name, cause: fit.messages.joined(separator: "; "),
                                hint: "sous fit --recipe \(deployment.recipe.name) --inventory \(inv.file) shows the budget; --force starts it anyway", exitCode: .checkFailed)
            }
            var detail = "\(fit.verdict.rawValue): \(fit.kv_tokens) KV tokens per rank; quantization \(ckpt.quantization?.method ?? "none") from the checkpoint"
            if let w = Checkpoint.kvCacheWarning(ckpt.quantization, recipeKVDtype: deployment.engine.kvCacheDtype) { detail += "; warning: \(w)" }
            record("fit", .ok, detail, t)
        } else {
            record("fit", .skipped, "the checkpoint has no model.safetensors.index.json to size it", t)
        }

        // Harden: sshd at OOMScoreAdjust -1000, earlyoom avoiding it.
        t = clock.now
        let hardened = try await each(sessions, step: "harden") { _, s in try await Harden.run(s, check: false) }
        let hardenChanged = hardened.values.contains { $0.drift }
        record("harden", hardenChanged ? .changed : .ok, "sshd oom_score_adj -1000, earlyoom active", t)

        // Pull in parallel; the same image ID everywhere.
        t = clock.now
        let ids = try await each(sessions, step: "pull") { node, s -> (String, Bool) in
            let inspect = RemoteCommand(["docker", "image", "inspect", "--format", "{{.Id}}", inv.image], timeout: .seconds(30))
            var r = try await s.run(inspect)
            if r.ok { return (r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), false) }
            let pull = try await s.run(RemoteCommand(["docker", "pull", inv.image], timeout: .seconds(3600)))
            if !pull.ok { throw UpFailure(step: "pull", node: node.name, cause: pull.tail(3), hint: "check `image` in \(inv.file) and the node's registry access", exitCode: .checkFailed) }
            r = try await s.run(inspect)
            return (r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), true)
        }
        let pulled = ids.values.contains { $0.1 }
        let distinct = Set(ids.values.map(\.0))
        if distinct.count != 1 {
            record("pull", .failed, "image IDs differ", t)
            throw UpFailure(step: "pull", node: nil, cause: "the nodes hold different image IDs for \(inv.image): " + ids.map { "\($0.key) \($0.value.0.prefix(19))" }.sorted().joined(separator: ", "),
                            hint: "pin the image by digest in \(inv.file), then `sous exec -i \(inv.file) -- docker pull \(inv.image)`", exitCode: .checkFailed)
        }
        let imageID = distinct.first!
        record("pull", pulled ? .changed : .ok, "\(inv.image) \(imageID.prefix(19))", t)

        // Env files: 0600, the key on the head only; uploaded only when the content differs.
        t = clock.now
        let changedEnv = try await each(sessions, step: "env") { node, s -> Bool in
            let text = byName[node.name]!.envFileText(secret: key)
            let want = sha256Hex(text)
            let have = try await s.run(.shell("sha256sum \(NodePaths.envFile) 2>/dev/null | cut -d' ' -f1; stat -c %a \(NodePaths.envFile) 2>/dev/null || true"))
            let lines = have.stdoutText.split(separator: "\n")
            if lines.count == 2, lines[0] == want, lines[1] == "600" { return false }
            let dir = try await s.run(RemoteCommand(["install", "-d", "-m", "0755", "-o", node.user, NodePaths.stateDir], sudo: true))
            if !dir.ok { throw UpFailure(step: "env", node: node.name, cause: dir.tail(), hint: nil, exitCode: .checkFailed) }
            try await s.upload(Data(text.utf8), to: NodePaths.envFile, mode: 0o600, sudo: false)
            return true
        }
        let envChanged = changedEnv.values.contains(true)
        record("env", envChanged ? .changed : .ok, NodePaths.envFile, t)

        // Is every rank already running exactly what the recipe renders?
        t = clock.now
        let current = try await each(sessions, step: "inspect") { node, s -> Bool in
            let r = try await s.run(RemoteCommand(["docker", "inspect", "--format", "{{.State.Running}} {{.Image}} {{json .Args}}", NodePaths.container]))
            guard r.ok else { return false }
            let want = "true \(imageID) " + String(decoding: try JSONSerialization.data(withJSONObject: byName[node.name]!.serveArgv, options: [.withoutEscapingSlashes]), as: UTF8.self)
            return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == want
        }
        let upToDate = current.values.allSatisfy { $0 } && !envChanged
        var restarted = false
        if upToDate {
            record("start", .ok, "every rank already runs the rendered command", t)
        } else {
            if interruptible {
                try Interruption.shared.check("start", state: "nothing was restarted: what ran before still runs")
            }
            // Stop the head first (it serves), then the workers; start workers first, then the head.
            let ordered = inv.ranked.map(\.node)
            for node in ordered {
                _ = try await sessions[node.name]!.run(RemoteCommand(["docker", "rm", "-f", NodePaths.container], timeout: .seconds(60)))
            }
            for node in ordered.reversed() where node.name != inv.head.name || ordered.count == 1 {
                try await start(node, sessions[node.name]!, byName[node.name]!)
            }
            if ordered.count > 1 { try await start(inv.head, sessions[inv.head.name]!, byName[inv.head.name]!) }
            restarted = true
            record("start", .changed, "workers, then the head", t)
        }

        // Wait in layers.
        t = clock.now
        let deadline = clock.now + engineTimeout
        var healthy = false
        var lastLog: ContinuousClock.Instant?
        while !healthy {
            if interruptible {
                try Interruption.shared.check("wait", state: "the engine containers keep starting; `sous up` again waits for them, `sous status` shows them")
            }
            for node in inv.ranked.map(\.node) {
                let r = try await sessions[node.name]!.run(RemoteCommand(["docker", "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", NodePaths.container]))
                if !r.stdoutText.hasPrefix("true") {
                    let log = try await sessions[node.name]!.run(RemoteCommand(["docker", "logs", "--tail", "15", NodePaths.container]))
                    record("wait", .failed, "container exited on \(node.name)", t)
                    throw UpFailure(step: "wait: container running", node: node.name, cause: "the engine container exited (\(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)))",
                                    logTail: log.stdoutText + log.stderrText, hint: "read the log above; `sous render --recipe \(deployment.recipe.name) --inventory \(inv.file) --node \(node.name)` shows what it ran", exitCode: .checkFailed)
                }
            }
            if let h = try? await probe.get(baseURL + "/health", bearer: nil, timeout: .seconds(5)), h.status == 200 {
                healthy = true
                break
            }
            // What a person would watch with `docker logs -f`: the head's latest line, every 2 s.
            if lastLog.map({ clock.now - $0 >= .seconds(2) }) ?? true {
                lastLog = clock.now
                let line = try await sessions[inv.head.name]!.run(RemoteCommand(["docker", "logs", "--tail", "1", NodePaths.container]))
                let text = (line.stdoutText + line.stderrText).trimmingCharacters(in: .whitespacesAndNewlines).prefix(100)
                reporter.progress(key: "wait", line: "waiting \(Human.duration((clock.now - t).seconds)) of \(Human.duration(engineTimeout.seconds)) for /health; \(inv.head.name): \(text)", done: false)
            }
            if clock.now > deadline {
                let log = try await sessions[inv.head.name]!.run(RemoteCommand(["docker", "logs", "--tail", "15", NodePaths.container]))
                record("wait", .failed, "no healthy /health", t)
                throw UpFailure(step: "wait: /health", node: inv.head.name, cause: "no 200 from \(baseURL)/health within \(engineTimeout) (a rank that never joins keeps the API down)",
                                logTail: log.stdoutText + log.stderrText, hint: "check every node's log: `sous exec -i \(inv.file) -- docker logs --tail 20 \(NodePaths.container)`", exitCode: .checkFailed)
            }
            try await Task.sleep(for: pollInterval)
        }
        record("wait", .ok, "containers running, /health 200", t)

        // Verify like an agent: model list (and 401 without the key), fingerprint, the four checks.
        t = clock.now
        let version = inv.vllmVersion
        let hasFingerprint = version.map { ParserCatalog.builtin.hasSystemFingerprint($0) } ?? true
        let sampling = deployment.recipe.sampling.map { ($0.key, $0.value.value) }
        let checks = await Validator(probe: probe, baseURL: baseURL, model: deployment.recipe.servedModelName, key: key, sampling: sampling,
                                     tensorParallel: hasFingerprint ? deployment.recipe.tensorParallelSize : nil, timeout: checkTimeout).run()
        var fingerprint = checks.first { $0.name.hasPrefix("fingerprint") && $0.passed }?.detail
        var topology = ""
        if !hasFingerprint {
            // No fingerprint before vLLM 0.21: the topology comes from what every rank was started with.
            for node in inv.nodes {
                let r = try await sessions[node.name]!.run(RemoteCommand(["docker", "inspect", "--format", "{{json .Args}}", NodePaths.container]))
                if !r.stdoutText.contains("\"--tensor-parallel-size\",\"\(deployment.recipe.tensorParallelSize)\"") {
                    throw UpFailure(step: "verify: topology", node: node.name, cause: "the rank does not run --tensor-parallel-size \(deployment.recipe.tensorParallelSize)", hint: nil, exitCode: .checkFailed)
                }
            }
            // And from what the engine itself parsed: vLLM logs its non-default arguments at start.
            let tp = deployment.recipe.tensorParallelSize
            let line = try await sessions[inv.head.name]!.run(.shell("docker logs \(NodePaths.container) 2>&1 | grep -m1 'non-default args'"))
            if line.ok, !line.stdoutText.contains("'tensor_parallel_size': \(tp)") {
                throw UpFailure(step: "verify: topology", node: inv.head.name, cause: "the engine's startup log does not show tensor_parallel_size \(tp): \(line.stdoutText.prefix(300))", hint: nil, exitCode: .checkFailed)
            }
            topology = "tp verified from docker inspect on every node" + (line.ok ? " and the head's startup log" : " (no `non-default args` line in the head's log)")
            fingerprint = nil
        }
        let failed = checks.filter { !$0.passed }
        record("verify", failed.isEmpty ? .ok : .failed, "\(checks.count - failed.count)/\(checks.count) checks" + (hasFingerprint ? "" : "; vLLM \(version!) has no system_fingerprint: \(topology)"), t)
        if let f = failed.first {
            let log = try? await sessions[inv.head.name]!.run(RemoteCommand(["docker", "logs", "--tail", "10", NodePaths.container]))
            throw UpFailure(step: "verify: \(f.name)", node: inv.head.name, cause: f.detail + (f.diagnosis.map { "\n  cause: \($0)" } ?? ""),
                            logTail: log.map { $0.stdoutText + $0.stderrText }, hint: "sous validate --base-url \(baseURL) --model \(deployment.recipe.servedModelName) shows every check", exitCode: .checkFailed)
        }

        let result = UpResult(cluster: inv.cluster, recipe: deployment.recipe.name,
                              recipe_digest: String(sha256Hex(commands.map { (try? ShellQuote.join($0.dockerArgv)) ?? "" }.joined(separator: "\n")).prefix(16)),
                              image: inv.image, image_id: imageID, fingerprint: fingerprint, restarted: restarted, checks: checks,
                              steps: [], finished_at: ISO8601DateFormatter().string(from: Date()))
        return result
    }

    func start(_ node: NodeSpec, _ s: NodeSession, _ c: NodeCommand) async throws {
        let r = try await s.run(RemoteCommand(c.dockerArgv, timeout: .seconds(600)))
        if !r.ok {
            throw UpFailure(step: "start", node: node.name, cause: r.tail(3), hint: "sous render --recipe \(deployment.recipe.name) --inventory \(inv.file) --node \(node.name)", exitCode: .checkFailed)
        }
    }

    /// Appends the result to the head's journal and the local one; a failed write on the head fails `up`.
    func journal(_ result: UpResult, head: NodeSession) async throws {
        let r = try await Journal.append(event: "up", result, head: head)
        if !r.ok { throw UpFailure(step: "journal", node: head.node.name, cause: r.tail(), hint: nil, exitCode: .checkFailed) }
    }

    /// Runs `body` on every node at once; the first failure (in inventory order) is thrown after all finish.
    @discardableResult
    func each<T: Sendable>(_ sessions: [String: NodeSession], step: String, _ body: @escaping @Sendable (NodeSpec, NodeSession) async throws -> T) async throws -> [String: T] {
        let outcomes = await fanOut(inv.nodes) { node in try await body(node, sessions[node.name]!) }
        var values: [String: T] = [:]
        for o in outcomes {
            switch o.result {
            case .success(let v): values[o.node.name] = v
            case .failure(let e as UpFailure): throw e
            case .failure(let e): throw UpFailure(step: step, node: o.node.name, cause: (e as? SousFailure)?.message ?? "\(e)", hint: (e as? SousFailure)?.hint,
                                                  exitCode: (e as? SousFailure)?.exitCode ?? .checkFailed)
            }
        }
        return values
    }
}

/// Where sous keeps its local journal.
public enum Journal {
    public static var localPath: String {
        let base = ProcessInfo.processInfo.environment["XDG_STATE_HOME"] ?? (NSHomeDirectory() + "/.local/state")
        return base + "/sous/journal.jsonl"
    }

    /// Appends `{"event": EVENT, …value's fields}` as one line to the head's journal (a single O_APPEND write,
    /// the line on stdin) and to the local one; returns the head's result.
    public static func append<T: Encodable>(event: String, _ value: T, head: NodeSession) async throws -> CommandResult {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let entry = "{\"event\":\"\(event)\"," + String(decoding: try encoder.encode(value), as: UTF8.self).dropFirst() + "\n"
        let r = try await head.run(RemoteCommand(["sh", "-c", "cat >> \"$1\"", "sous-journal", NodePaths.stateDir + "/journal.jsonl"], stdin: Data(entry.utf8)))
        appendLocal(entry)
        return r
    }

    /// Appends one line to the local journal (best effort: the head's journal is the record).
    public static func appendLocal(_ line: String) {
        let local = localPath
        try? FileManager.default.createDirectory(atPath: (local as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if let fh = FileHandle(forWritingAtPath: local) ?? (FileManager.default.createFile(atPath: local, contents: nil) ? FileHandle(forWritingAtPath: local) : nil) {
            fh.seekToEndOfFile()
            fh.write(Data(line.utf8))
            try? fh.close()
        }
    }
}
