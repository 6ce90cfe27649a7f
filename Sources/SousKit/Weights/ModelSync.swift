import Foundation

/// One progress report of a transfer to one node.
public struct TransferProgress: Sendable {
    public var node: String
    /// `download (hf on the host)`, `copy from spark-1 (rsync)`…
    public var phase: String
    public var done: Int
    public var total: Int?
    /// The total is the safetensors index's total_size (a download's size is not known before it ends).
    public var estimated = false
    /// Bytes per second since the transfer started (what this run moved, not what was already there).
    public var rate: Double

    public var line: String {
        var s = "\(node) \(phase): \(Human.bytes(done))"
        if let total, total > 0 {
            s += " / \(estimated ? "~" : "")\(Human.bytes(total))"
            if rate > 0, total > done { s += ", \(Human.bytes(Int(rate)))/s, \(Human.duration(Double(total - done) / rate)) left" }
        } else if rate > 0 {
            s += ", \(Human.bytes(Int(rate)))/s"
        }
        return s
    }
}

/// Sizes and durations as people read them: 3.0 GiB, 2m52s.
public enum Human {
    public static func bytes(_ b: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(b), i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(b) B" : String(format: "%.1f %@", v, units[i])
    }

    public static func duration(_ s: Double) -> String {
        let t = Int(s.rounded(.up))
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

/// What happened to the checkpoint on one node.
public struct ModelNodeResult: Sendable, Encodable {
    public var node: String
    public var before: CheckpointStatus.State
    /// nil when the node already held it; else what sous did.
    public var action: String?
    public var status: CheckpointStatus
}

/// Makes the recipe's checkpoint present, complete and identical on every node: downloaded once (on the head,
/// with the Hugging Face CLI on the host or inside the pinned image), then copied node to node over the
/// interconnect with rsync, each step's progress reported, and every node's files checked afterwards.
public struct ModelSync: Sendable {
    public var deployment: Deployment
    /// The token for gated models; it reaches the node only as a 0600 file the download reads through HF_TOKEN_PATH.
    public var hfToken: Secret?
    public var onProgress: @Sendable (TransferProgress) -> Void
    public var pollInterval: Duration

    public init(deployment: Deployment, hfToken: Secret?, pollInterval: Duration = .milliseconds(500),
                onProgress: @escaping @Sendable (TransferProgress) -> Void = { _ in }) {
        self.deployment = deployment
        self.hfToken = hfToken
        self.pollInterval = pollInterval
        self.onProgress = onProgress
    }

    var inv: Inventory { deployment.inventory }
    var model: String { deployment.recipe.model }

    func fail(_ node: String?, _ cause: String, hint: String? = nil, _ code: ExitStatus = .checkFailed) -> StepFailure {
        StepFailure(step: "model", node: node, cause: cause, hint: hint, exitCode: code)
    }

    public func status(_ s: NodeSession, verify: Bool = false) async throws -> CheckpointStatus {
        try await Checkpoint.read(s, repo: HFRepo(deployment, node: s.node), verify: verify)
    }

    public func statuses(_ sessions: [String: NodeSession], verify: Bool = false) async throws -> [String: CheckpointStatus] {
        var out: [String: CheckpointStatus] = [:]
        for o in await fanOut(inv.nodes, { try await status(sessions[$0.name]!, verify: verify) }) { out[o.node.name] = try o.result.get() }
        return out
    }

    static func same(_ a: CheckpointStatus, _ b: CheckpointStatus) -> Bool {
        a.state == .present && b.state == .present && a.revision == b.revision && a.files == b.files
    }

    /// Why the nodes do not hold the same complete checkpoint, or nil when they do.
    public func inconsistency(_ results: [ModelNodeResult], verify: Bool = false) -> StepFailure? {
        let head = results.first { $0.node == inv.head.name }!.status
        let source = head.state == .present ? head : results.first { $0.status.state == .present }?.status
        guard let bad = results.first(where: { r in source.map { !Self.same(r.status, $0) } ?? true }) else { return nil }
        let st = bad.status
        let why = st.state == .present ? "differs from the other nodes' copy (revision \(st.revision.map { String($0.prefix(12)) } ?? "?"))"
            : "is \(st.state.rawValue): \(st.problems.joined(separator: "; "))"
        return fail(bad.node, "\(model) \(why)", hint: "sous model --recipe \(deployment.recipe.file) --inventory \(inv.file) --fetch" + (verify ? " --verify" : ""))
    }

    /// Every node's status; with `fetch`, first makes the checkpoint present everywhere. With `verify`, every
    /// file is hashed too, before and after (a corrupt file counts as broken: removed and fetched again).
    public func ensure(_ sessions: [String: NodeSession], fetch: Bool, verify: Bool = false) async throws -> [ModelNodeResult] {
        let before = try await statuses(sessions, verify: verify)
        let head = inv.head.name
        let source = before[head]!.state == .present ? head : inv.nodes.first { before[$0.name]!.state == .present }?.name
        if !fetch || inv.nodes.allSatisfy({ n in source.map { Self.same(before[n.name]!, before[$0]!) } ?? false }) {
            return inv.nodes.map { ModelNodeResult(node: $0.name, before: before[$0.name]!.state, action: nil, status: before[$0.name]!) }
        }
        var actions: [String: String] = [:]
        let src = source ?? head
        if source == nil {
            actions[head] = try await download(sessions[head]!, status: before[head]!)
        }
        let srcStatus = source == nil ? try await status(sessions[src]!, verify: verify) : before[src]!
        guard srcStatus.state == .present else {
            throw fail(src, "the download finished but the checkpoint is \(srcStatus.state.rawValue): \(srcStatus.problems.joined(separator: "; "))")
        }
        let targets = inv.nodes.filter { $0.name != src && !Self.same(before[$0.name]!, srcStatus) }
        if !targets.isEmpty {
            let work = try await trust(targets, on: sessions[src]!, sessions: sessions)
            let copies = await fanOut(targets) { n in
                try await copy(from: sessions[src]!, to: sessions[n.name]!, work: work, before: before[n.name]!)
            }
            for c in copies { actions[c.node.name] = try c.result.get() }
        }
        var results: [ModelNodeResult] = []
        let after = try await statuses(sessions, verify: verify)
        for n in inv.nodes {
            let st = after[n.name]!
            if !Self.same(st, srcStatus) {
                throw fail(n.name, "after the transfer the checkpoint is \(st.state.rawValue)" + (st.problems.isEmpty ? " and differs from \(src)'s" : ": \(st.problems.joined(separator: "; "))"))
            }
            results.append(ModelNodeResult(node: n.name, before: before[n.name]!.state, action: actions[n.name], status: st))
        }
        return results
    }

    // MARK: download

    /// Files a check proved broken (truncated, unreadable header) are removed with their blobs first: the HF CLI
    /// trusts a snapshot link that exists and would never repair them.
    func removeBroken(_ s: NodeSession, _ st: CheckpointStatus) async throws {
        guard !st.broken.isEmpty, let rev = st.revision else { return }
        let dir = HFRepo(deployment, node: s.node).dir + "/snapshots/" + rev
        let r = try await s.run(HFCacheOps.removeWithBlobs(st.broken.map { dir + "/" + $0 }))
        if !r.ok { throw fail(s.node.name, "could not remove the broken files: \(r.tail())") }
    }

    func home(_ s: NodeSession) async throws -> String {
        let r = try await s.run(HFCacheOps.workDir())
        guard r.ok, r.stdoutText.hasPrefix("/") else { throw fail(s.node.name, "cannot create ~/.cache/sous: \(r.tail())") }
        return r.stdoutText
    }

    func download(_ s: NodeSession, status: CheckpointStatus) async throws -> String {
        let repo = HFRepo(deployment, node: s.node)
        try await removeBroken(s, status)
        let work = try await home(s)
        // The CLI on the host, else the one inside the pinned image.
        let which = try await s.run(HFCacheOps.findCLI())
        let hostCLI = which.stdoutText.split(separator: "\n").first.map(String.init)
        let tokenFile = work + "/hf-token"
        // A token file left by a run that was killed (SIGKILL skips the removal below) goes first.
        _ = try await s.run(HFCacheOps.remove(tokenFile))
        if let hfToken { try await s.upload(Data(hfToken.reveal().utf8), to: tokenFile, mode: 0o600, sudo: false) }
        // Without a CLI on the host: `hf` in the pinned image, as the node user's own uid (its cache stays its own).
        if hostCLI == nil, !(try await s.run(DockerOps.imageID(inv.image))).ok { _ = try await s.run(DockerOps.pull(inv.image)) }
        let user = hostCLI == nil ? try await s.run(HFCacheOps.ids()).value : ""
        let image = inv.image, token = hfToken != nil, revision = deployment.recipe.revision
        let model = self.model
        let command: @Sendable ([String]) -> (String, [String]) = { files in
            let args = HFDownload.arguments(model: model, revision: revision, files: files)
            if let hostCLI {
                return ("\((hostCLI as NSString).lastPathComponent) on the host",
                        ["env"] + HFDownload.environment + (token ? ["HF_TOKEN_PATH=\(tokenFile)"] : []) + [hostCLI] + args + ["--cache-dir", repo.hub])
            }
            var docker = ["docker", "run", "--rm", "--network", "host", "--user", user,
                          "-e", "HOME=/tmp", "-v", "\(repo.cache):/root/.cache/huggingface"] + HFDownload.environment.flatMap { ["-e", $0] }
            if token { docker += ["-v", "\(tokenFile):/run/sous-hf-token:ro", "-e", "HF_TOKEN_PATH=/run/sous-hf-token"] }
            return ("hf in \(image)", docker + ["--entrypoint", "hf", image] + args + ["--cache-dir", "/root/.cache/huggingface/hub"])
        }
        let result: Result<String, any Error>
        do { result = .success(try await fetch(s, repo: repo, work: work, command: command)) } catch { result = .failure(error) }
        if hfToken != nil { _ = try? await s.run(HFCacheOps.remove(tokenFile)) }
        return "downloaded (\(try result.get()))"
    }

    func fetch(_ s: NodeSession, repo: HFRepo, work: String, command: ([String]) -> (String, [String])) async throws -> String {
        let node = s.node.name
        // First config.json and the index: quick, fails fast on a gated or missing repo, and gives the total.
        let (tool, first) = command(HFDownload.metadataFiles)
        let meta = try await s.run(RemoteCommand(first, timeout: .seconds(600)))
        if !meta.ok { throw classify(node, meta.combined, tool: tool) }
        let afterMeta = try await self.status(s)
        let total = afterMeta.fit?.weightBytes
        let (_, all) = command([])
        // A fresh start (not a second run attaching to a running one) first drops the partial files that no CLI
        // will resume; progress counts the blobs and the partial files being written.
        let job = try await NodeJob.start(s, dir: work, name: "download-\(repo.dirName)", argv: HFCacheOps.withoutStalePartials(repo.dir + "/blobs", then: all))
        let rc = try await watch(job, phase: "download (\(tool))" + (job.attached ? ", attached to the run started earlier" : ""), total: total, estimated: true, on: s,
                                 measure: HFCacheOps.downloaded(repo.dir + "/blobs"))
        if rc != 0 { throw classify(node, try await job.log(), tool: tool) }
        return tool
    }

    /// The Hugging Face CLI's errors, in words that say what to do. Every generation exits 1 for all of them (0.x
    /// with the exception's traceback, ≥ 1.x with `Error: …`), so the kind is read from the output: `HFDownload.failure`.
    func classify(_ node: String, _ output: String, tool: String) -> StepFailure {
        let tokenEnv = inv.hfTokenEnv
        let page = "https://huggingface.co/\(model)"
        let howToken = "export \(tokenEnv)=hf_… (a read token of that account, from https://huggingface.co/settings/tokens) and run again: sous hands it to the node only in a 0600 file (HF_TOKEN_PATH), never on a command line"
        switch HFDownload.failure(output) {
        case .gated:
            if hfToken == nil {
                return fail(node, "\(model) is a gated model: access must be requested on its page (\(page)) and \(tokenEnv) is not set",
                            hint: "request access at \(page) (accept its license), then \(howToken)", .badInput)
            }
            return fail(node, "the account of \(tokenEnv) has no access to the gated model \(model) (access is granted per account on the model page)",
                        hint: "request access at \(page) with that account, or \(howToken)", .badInput)
        case .invalidToken:
            return fail(node, "the hub rejected the token in \(tokenEnv) (invalid or expired)", hint: "create a new read token at https://huggingface.co/settings/tokens and export \(tokenEnv)", .badInput)
        case .revisionNotFound:
            return fail(node, "\(model) has no revision \(deployment.recipe.revision ?? "main")", hint: "check `revision` in \(deployment.recipe.file)", .badInput)
        case .repoNotFound:
            return fail(node, "no model \(model) on the hub (or it is private and \(tokenEnv) cannot see it)", hint: "check `model` in \(deployment.recipe.file)", .badInput)
        case .noCLI:
            return fail(node, "the node has no Hugging Face CLI and the image has no `hf`", hint: "install it on the node: `pip install -U huggingface_hub` (gives `hf`)")
        case .deprecatedCLI:
            return fail(node, "the node's `huggingface-cli` is the deprecated stub of huggingface_hub ≥ 1.0 and downloads nothing", hint: "put `hf` on the node's PATH (it comes with the same package)")
        case .other:
            let tail = HFDownload.plain(output).split(separator: "\n").suffix(5).joined(separator: "\n")
            return fail(node, "the download (\(tool)) failed: \(tail)", hint: "run again: finished files are kept")
        }
    }

    // MARK: copy

    /// Writes, on the source node, a known_hosts file with the host keys sous itself verified for the targets,
    /// so the node-to-node SSH of the copy trusts exactly those keys (nothing learned on first use). Returns the
    /// source's work directory (~/.cache/sous), where the file and the copies' job files go.
    func trust(_ targets: [NodeSpec], on src: NodeSession, sessions: [String: NodeSession]) async throws -> String {
        let work = try await home(src)
        var lines = ""
        for t in targets {
            guard let key = sessions[t.name]!.hostKey else { continue }
            let port = t.port ?? 22
            lines += (port == 22 ? t.interconnectIP : "[\(t.interconnectIP)]:\(port)") + " " + key + "\n"
        }
        try await src.upload(Data(lines.utf8), to: work + "/known_hosts", mode: 0o600, sudo: false)
        return work
    }

    func copy(from src: NodeSession, to dst: NodeSession, work: String, before: CheckpointStatus) async throws -> String {
        let t = dst.node
        let from = HFRepo(deployment, node: src.node), to = HFRepo(deployment, node: t)
        try await removeBroken(dst, before)
        let ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(work)/known_hosts",
                   "-o", "ConnectTimeout=5", "-p", String(t.port ?? 22)]
        let target = "\(t.user)@\(t.interconnectIP)"
        let probe = try await src.run(HFCacheOps.rsyncBothEnds(ssh: ssh, target: target))
        let totalText = try await src.run(HFCacheOps.size(from.dir))
        let total = Int(totalText.value)
        guard probe.ok else {
            // The nodes cannot log in to each other (or lack rsync): the bytes go through sous instead.
            let why = probe.exitStatus == 5 ? "rsync is not installed on \(src.node.name)"
                : probe.exitStatus == 7 ? "rsync is not installed on \(t.name)" : "\(src.node.name) cannot log in to \(target)"
            try await stream(from: src, to: dst, from: from, to: to, total: total)
            return "copied from \(src.node.name) (stream through sous: \(why))"
        }
        let mk = try await dst.run(HFCacheOps.makeDir(to.hub))
        if !mk.ok { throw fail(t.name, "cannot create \(to.hub): \(mk.tail())") }
        let rsync = ["rsync", "-a", "--partial", "--exclude=*.incomplete", "-e", try ShellQuote.join(ssh), from.dir + "/", "\(target):\(to.dir)/"]
        let job = try await NodeJob.start(src, dir: work, name: "copy-\(t.name)-\(from.dirName)", argv: rsync)
        let rc = try await watch(job, phase: "copy from \(src.node.name) (rsync)", total: total,
                                 on: dst, measure: HFCacheOps.size(to.dir))
        if rc != 0 { throw fail(t.name, "rsync from \(src.node.name) failed: \(try await job.log().split(separator: "\n").suffix(3).joined(separator: "\n"))", hint: "run again to resume") }
        return "copied from \(src.node.name) (rsync over \(t.interconnectIP))"
    }

    /// `tar` on the source, its output streamed through this process into `tar -x` on the target, with at
    /// most 16 MiB in flight. Slower than rsync between the nodes (every byte crosses this machine's link
    /// twice) and not resumable within a file, but it needs no login from node to node.
    func stream(from src: NodeSession, to dst: NodeSession, from: HFRepo, to: HFRepo, total: Int?) async throws {
        let pipe = BytePipe()
        let pack = HFCacheOps.pack(dir: from.hub, name: from.dirName), unpack = HFCacheOps.unpack(into: to.hub)
        @Sendable func produce() async throws -> CommandResult {
            do {
                let r = try await src.run(pack, output: { try pipe.put($0) })
                if r.ok { pipe.close() } else { pipe.cancel() }
                return r
            } catch { pipe.cancel(); throw error }
        }
        @Sendable func consume() async throws -> CommandResult {
            do {
                let r = try await dst.run(unpack, input: { try pipe.take() })
                if !r.ok { pipe.cancel() }
                return r
            } catch { pipe.cancel(); throw error }
        }
        let phase = "copy from \(src.node.name) (stream through sous)", node = dst.node.name, interval = pollInterval
        let report = onProgress, clock = ContinuousClock(), start = clock.now
        let tick: @Sendable () -> Void = {
            let elapsed = (clock.now - start).seconds
            report(TransferProgress(node: node, phase: phase, done: min(pipe.bytes, total ?? .max), total: total, rate: elapsed > 0.2 ? Double(pipe.bytes) / elapsed : 0))
        }
        let ticker = Task {
            while !Task.isCancelled {
                if Interruption.shared.requested != nil { pipe.cancel() }
                tick()
                try? await Task.sleep(for: interval)
            }
        }
        defer { ticker.cancel() }
        async let packed = produce()
        async let unpacked = consume()
        let p: CommandResult, u: CommandResult
        do {
            (p, u) = try await (packed, unpacked)
        } catch {
            try Interruption.shared.check("model", node: node, state: "the copy to \(node) stopped part way; `sous model … --fetch` copies it again")
            throw error
        }
        tick()
        if !p.ok { throw fail(src.node.name, "tar on \(src.node.name) failed: \(p.tail(3))") }
        if !u.ok { throw fail(node, "tar on \(node) failed: \(u.tail(3))", hint: "run again: the copy starts over") }
    }

    /// Polls a background job until it ends, reporting the bytes `measure` prints on `on` as progress.
    func watch(_ job: NodeJob, phase: String, total: Int?, estimated: Bool = false, on target: NodeSession, measure: RemoteCommand) async throws -> Int32 {
        let clock = ContinuousClock(), start = clock.now
        var first: Int?
        while true {
            try Interruption.shared.check("model", node: job.session.node.name,
                                          state: "the \(phase) goes on on \(job.session.node.name); run the same command again to follow it")
            let state = try await job.state(wait: pollInterval)
            let m = try await target.run(measure)
            let bytes = Int(m.value) ?? 0
            if first == nil { first = bytes }
            let elapsed = (clock.now - start).seconds
            onProgress(TransferProgress(node: target.node.name, phase: phase, done: bytes, total: total, estimated: estimated,
                                        rate: elapsed > 0.2 ? Double(bytes - first!) / elapsed : 0))
            switch state {
            case .finished(let rc): return rc
            case .lost: throw fail(job.session.node.name, "the \(phase) process ended without an exit status (killed?)", hint: "run again to resume")
            case .running: continue
            }
        }
    }
}

/// A command left running on a node in the background (it survives a dropped connection, and a second
/// run attaches to it instead of starting another), with its exit status and log in files.
struct NodeJob: Sendable {
    enum State { case running, finished(Int32), lost }
    let session: NodeSession
    let base: String
    /// The same transfer was already running (started by an earlier, interrupted run).
    var attached = false

    static func start(_ s: NodeSession, dir: String, name: String, argv: [String]) async throws -> NodeJob {
        var job = NodeJob(session: s, base: dir + "/" + name)
        let r = try await s.run(JobOps.start(base: job.base, argv: argv))
        guard r.ok else { throw StepFailure(step: "model", node: s.node.name, cause: "could not start the transfer: \(r.tail())", hint: nil, exitCode: .checkFailed) }
        job.attached = r.stdoutText.hasPrefix("attached")
        return job
    }

    /// Waits on the node up to `wait` for the job to end (so an ending job is seen at once, without a poll
    /// interval's delay), then says whether it runs, ended with a status, or vanished without one.
    func state(wait: Duration) async throws -> State {
        let t = try await session.run(JobOps.state(base: base, wait: wait)).value
        if t == "running" { return .running }
        if let rc = Int32(t) { return .finished(rc) }
        return .lost
    }

    func log() async throws -> String {
        try await session.run(JobOps.log(base: base)).stdoutText
    }
}
