import Foundation

/// What runs on a node, as `docker inspect` and the node report it.
public struct RunningNode: Sendable {
    public var node: NodeSpec
    public var running: Bool
    /// Config.Image (the tag it was started from) and Image (the image ID).
    public var imageRef: String
    public var imageID: String
    public var args: [String]
    public var env: [(name: String, value: String)]
    /// quant_method (config.json) or quant_algo (hf_quant_config.json) of the checkpoint in the node's HF cache.
    public var checkpointQuantization: String?
    /// `vllm serve` runs under sous's keeper (Keeper): it comes back with its group after a reboot.
    public var kept: Bool

    public init(node: NodeSpec, running: Bool, imageRef: String, imageID: String, args: [String], env: [(name: String, value: String)], checkpointQuantization: String?, kept: Bool = false) {
        self.kept = kept
        self.node = node
        self.running = running
        self.imageRef = imageRef
        self.imageID = imageID
        self.args = args
        self.env = env
        self.checkpointQuantization = checkpointQuantization
    }
}

/// One thing the audit found.
public struct Finding: Sendable, Equatable, Encodable {
    public enum Kind: String, Sendable, Encodable { case ok, drift, note }
    public var kind: Kind
    public var text: String
}

/// Compares what runs with what the recipe renders. Pure: the runner gathers `RunningNode`s.
public enum Audit {
    /// `serve MODEL --flag value --bare …` → model and flags in order (a value is the next token unless it is a flag).
    public static func flags(_ argv: [String]) -> (model: String?, flags: [(String, String?)]) {
        var model: String?
        var out: [(String, String?)] = []
        var i = argv.first == "serve" ? 1 : 0
        while i < argv.count {
            let t = argv[i]
            if t.hasPrefix("--") {
                if i + 1 < argv.count, !argv[i + 1].hasPrefix("--") { out.append((String(t.dropFirst(2)), argv[i + 1])); i += 2; continue }
                out.append((String(t.dropFirst(2)), nil))
            } else if model == nil { model = t }
            i += 1
        }
        return (model, out)
    }

    /// Every difference between the rendered command and what runs on one node.
    public static func compare(expected: NodeCommand, running r: RunningNode, deployment d: Deployment) -> [Finding] {
        var f: [Finding] = []
        func drift(_ s: String) { f.append(Finding(kind: .drift, text: s)) }
        func note(_ s: String) { f.append(Finding(kind: .note, text: s)) }
        guard r.running else {
            drift("the engine container is not running")
            return f
        }
        if r.imageRef == d.inventory.image { f.append(Finding(kind: .ok, text: "image \(r.imageRef) \(r.imageID.prefix(19))")) }
        else { drift("image \(r.imageRef), the inventory pins \(d.inventory.image)") }

        if Keeper.serveArgs(expected.containerArgs).kept && !r.kept {
            drift("`vllm serve` runs without sous's keeper (started by an older sous or by hand): after a reboot this rank would not come back with its group; sous up restarts it with one")
        }
        let version = VLLMVersion.fromImage(r.imageRef) ?? d.inventory.vllmVersion ?? ParserCatalog.builtin.releases.last!.version
        let want = flags(expected.serveArgv), have = flags(r.args)
        if want.model != have.model { drift("model \(have.model ?? "none"), the recipe serves \(want.model ?? "none")") }
        let wantMap = Dictionary(want.flags.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        let haveMap = Dictionary(have.flags.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        for (flag, value) in want.flags {
            guard let running = haveMap[flag] else { drift("missing --\(flag)" + (value.map { " \($0)" } ?? "")); continue }
            if running == value { continue }
            let kind: ParserCatalog.Kind? = flag == "tool-call-parser" ? .toolCall : flag == "reasoning-parser" ? .reasoning : nil
            if let kind, let a = running, let b = value, ParserCatalog.builtin.sameParser(a, b, kind: kind, version: version) {
                note("--\(flag) \(a) is the same parser as \(b) in vLLM \(version)")
            } else if flag == "override-generation-config", let a = running, let b = value, jsonEqual(a, b) {
                continue
            } else if flag == "override-generation-config" {
                drift("sampling \(running ?? "none"), the card's is \(value ?? "none")")
            } else {
                drift("--\(flag) \(running ?? "(bare)"), the recipe renders \(value ?? "(bare)")")
            }
        }
        for (flag, value) in have.flags where wantMap.index(forKey: flag) == nil {
            if flag == "quantization" {
                let q = value ?? ""
                if let ckpt = r.checkpointQuantization, !Checkpoint.quantizationAgrees(forced: q, checkpoint: ckpt) {
                    drift("--quantization \(q) is forced, but the checkpoint says \(ckpt)")
                } else {
                    drift("--quantization \(q) is forced; the recipe lets vLLM read it from the checkpoint" + (r.checkpointQuantization.map { " (\($0))" } ?? ""))
                }
                continue
            }
            drift("extra --\(flag)" + (value.map { " \($0)" } ?? ""))
        }
        for rule in KnownBad.matches(serveArgv: r.args, version: version) { drift("known-bad: " + KnownBad.describe(rule)) }
        if let len = haveMap["max-model-len"].flatMap({ $0 }).flatMap(Int.init), d.recipe.clientContext >= len {
            drift("client.context \(d.recipe.clientContext) is not below the running max-model-len \(len): agents will send prompts the server rejects")
        }

        let wantEnv = Dictionary(expected.env.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let haveEnv = Dictionary(r.env.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        for (name, value) in expected.env {
            guard let have = haveEnv[name] else { drift("missing env \(name)"); continue }
            // The engine-ready timeout follows `up --timeout` and only bounds a start: any value is the recipe's.
            if case .plain(let v) = value, v != have, name != EngineReady.variable { drift("env \(name)=\(have), the recipe renders \(v)") }
        }
        for (name, _) in r.env where wantEnv[name] == nil && !dockerDefaults.contains(name) {
            drift(name == "NCCL_IB_GID_INDEX" ? "env NCCL_IB_GID_INDEX is pinned (the GID table drifts; a pinned index hangs the handshake)"
                  : name == "VLLM_API_KEY" ? "the API key is set on a worker (it belongs on the head only)" : "extra env \(name)")
        }
        if !f.contains(where: { $0.kind == .drift }) { f.append(Finding(kind: .ok, text: "serve flags and environment match the recipe")) }
        return f
    }

    /// The node's checkpoint: complete, and (on a worker) the head's revision and files, size for size.
    public static func checkpoint(_ c: CheckpointStatus, head: CheckpointStatus, headName: String, isHead: Bool) -> Finding {
        let rev = c.revision.map { String($0.prefix(12)) } ?? "?"
        if c.state != .present { return Finding(kind: .drift, text: "checkpoint \(c.state.rawValue): \(c.problems.joined(separator: "; "))") }
        if !isHead {
            if c.revision != head.revision { return Finding(kind: .drift, text: "checkpoint at revision \(rev), \(headName) has \(head.revision.map { String($0.prefix(12)) } ?? "none")") }
            let differ = Set(c.files.keys).union(head.files.keys).filter { c.files[$0] != head.files[$0] }.sorted()
            if !differ.isEmpty { return Finding(kind: .drift, text: "checkpoint files differ from \(headName)'s: \(differ.prefix(3).joined(separator: ", "))\(differ.count > 3 ? " and \(differ.count - 3) more" : "")") }
        }
        return Finding(kind: .ok, text: "checkpoint \(rev) complete (\(Human.bytes(c.bytes)))" + (isHead ? "" : ", same as \(headName)'s"))
    }

    /// Variables an image sets itself (they show up in docker inspect without anyone asking).
    static let dockerDefaults: Set<String> = ["PATH", "HOME", "HOSTNAME", "LANG", "LC_ALL", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                                              "CUDA_VERSION", "NV_CUDA_LIB_VERSION", "PYTHONUNBUFFERED", "VLLM_USAGE_SOURCE", "TERM"]

    static func jsonEqual(_ a: String, _ b: String) -> Bool {
        guard let x = try? JSONSerialization.jsonObject(with: Data(a.utf8)) as? NSDictionary,
              let y = try? JSONSerialization.jsonObject(with: Data(b.utf8)) as? NSDictionary else { return a == b }
        return x == y
    }
}
