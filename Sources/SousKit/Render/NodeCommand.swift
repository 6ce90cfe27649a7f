import Foundation

/// Fixed names and paths sous uses on every node.
public enum NodePaths {
    public static let container = "sous-vllm"
    public static let stateDir = "/var/lib/sous"
    public static let envFile = "/var/lib/sous/vllm.env"
    public static let configFile = "/var/lib/sous/serve.yaml"
    /// Where the config file appears inside the container.
    public static let configInContainer = "/etc/sous/serve.yaml"
    public static let hfCacheInContainer = "/root/.cache/huggingface"
    public static let rayPort = 6379
}

/// One line of a node's env file.
public enum EnvValue: Sendable, Equatable {
    case plain(String)
    /// The API key, read at apply time from the named local environment variable; never rendered.
    case secret(fromLocalEnv: String)
}

/// A node's Docker env file (`docker run --env-file`): one `NAME=VALUE` a line, the value taken literally (no
/// quotes, no escapes), so a line break in a value would start another variable (`LD_PRELOAD=…`). This is its one
/// writer: the text uploaded to a node and the lines the rendered script writes are both made by `line`.
public enum EnvFile {
    /// One line; refuses a name that is not an identifier and a value holding CR, LF or NUL. The error names
    /// the variable and the character; a secret's value is never shown.
    public static func line(_ name: String, _ value: String, secret: Bool = false) throws(ShellQuote.Unrepresentable) -> String {
        try checkName(name)
        if let c = value.unicodeScalars.first(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
            throw ShellQuote.Unrepresentable(value: secret ? Secret.redacted : value,
                                             problem: "the value of \(name) holds U+\(String(format: "%04X", c.value)): a Docker env file line cannot carry a line break or a NUL")
        }
        return "\(name)=\(value)"
    }

    /// A variable's name: letters, digits and '_', not starting with a digit.
    public static func checkName(_ name: String) throws(ShellQuote.Unrepresentable) {
        guard name.matchesWhole(InventoryReader.envNamePattern) else {
            throw ShellQuote.Unrepresentable(value: name, problem: "not an environment variable name (letters, digits and '_')")
        }
    }
}

/// Everything one node runs: its env file (0600) and its container command.
public struct NodeCommand: Sendable {
    public var node: NodeSpec
    /// The rank within its group.
    public var rank: Int
    /// The group's index in `Deployment.groups`.
    public var group: Int = 0
    /// Checked by `EnvFile.line` when the command is rendered.
    public private(set) var env: [(name: String, value: EnvValue)]
    /// `docker run …` as argv.
    public var dockerArgv: [String]
    /// The `vllm serve …` part alone (after the entrypoint), for audits and the sim.
    public var serveArgv: [String]
    /// Everything after the image (what `docker inspect` shows as Args): the keeper and `vllm serve …`, or `serve …`.
    public var containerArgs: [String] = []

    public var isHead: Bool { rank == 0 }

    /// The env file's text, every line from `EnvFile.line`: the secret as [REDACTED], or (`secret` given) its real
    /// value, for the 0600 upload. Throws when the secret holds a line break or a NUL.
    public func envFile(secret: Secret? = nil) throws(ShellQuote.Unrepresentable) -> String {
        var text = ""
        for (name, value) in env {
            switch value {
            case .plain(let v): text += try EnvFile.line(name, v) + "\n"
            case .secret: text += try EnvFile.line(name, secret?.reveal() ?? Secret.redacted, secret: true) + "\n"
            }
        }
        return text
    }
}

/// vLLM's engine-ready timeout (vllm/envs.py v0.28.0:800-802, default 600): how long the API server's engine client
/// polls for the engine core's first message (v1/engine/core_client.py:653-671). With several API servers or
/// data-parallel front ends that bounds the whole start, shorter than a large model's load on a Spark, so the engine
/// gives up while `up` still waits; with one API server 0.28's engine sends that message before its own startup
/// wait, which has no deadline (v1/engine/utils.py:1216-1262; docs/research/vllm-rank-failure.md).
public enum EngineReady {
    public static let variable = "VLLM_ENGINE_READY_TIMEOUT_S"
    /// The wait budget and a minute more.
    public static func value(_ budget: Duration) -> String { String(Int(budget.seconds.rounded(.up)) + 60) }
    /// A line of the env file that only bounds a start: a change to it alone never restarts a running engine.
    static func isLine(_ line: Substring) -> Bool { line.hasPrefix(variable + "=") }
}

/// How the serve flags reach vLLM.
public enum ServeForm: Sendable {
    /// Every flag on the command line.
    case flags
    /// A `--config` YAML file with the flags every node shares; only per-node flags on the command line.
    case config
}

/// Renders a deployment into per-node commands. Pure: no I/O, no clock.
public struct Renderer: Sendable {
    public var deployment: Deployment
    public init(_ deployment: Deployment) { self.deployment = deployment }

    var recipe: Recipe { deployment.recipe }
    var inventory: Inventory { deployment.inventory }
    var engine: EngineSettings { deployment.engine }

    /// Every node's command, group by group, each group's head first.
    public func nodes(form: ServeForm = .flags) throws(ShellQuote.Unrepresentable) -> [NodeCommand] {
        var result: [NodeCommand] = []
        for group in groups {
            for (rank, node) in group.ranked {
                result.append(try command(for: node, rank: rank, group: group, form: form))
            }
        }
        return result
    }

    var groups: [ServeGroup] { deployment.groups }

    // MARK: vllm serve

    /// Flags every rank shares (model, parallelism, parsers, memory, sampling, extra args), in a fixed order.
    public func sharedFlags() -> [(flag: String, value: String?)] {
        var f: [(String, String?)] = []
        if let rev = recipe.revision { f.append(("revision", rev)) }
        f.append(("served-model-name", recipe.servedModelName))
        f.append(("tensor-parallel-size", "\(recipe.tensorParallelSize)"))
        if inventory.launcher == .ray { f.append(("distributed-executor-backend", "ray")) }
        f.append(("tool-call-parser", recipe.toolCallParser))
        f.append(("enable-auto-tool-choice", nil))
        if let r = recipe.reasoningParser { f.append(("reasoning-parser", r)) }
        if case .method(let m, _) = recipe.quantization { f.append(("quantization", m)) }
        f.append(("kv-cache-dtype", engine.kvCacheDtype))
        f.append(("max-model-len", "\(engine.maxModelLen)"))
        f.append(("gpu-memory-utilization", format(engine.gpuMemoryUtilization)))
        if recipe.trustRemoteCode { f.append(("trust-remote-code", nil)) }
        if engine.enableChunkedPrefill { f.append(("enable-chunked-prefill", nil)) }
        if !recipe.sampling.isEmpty { f.append(("override-generation-config", samplingJSON)) }
        for (flag, value) in engine.extraArgs {
            switch value {
            case .on: f.append((flag, nil))
            case .off: f.append(("no-\(flag)", nil))
            case .value(let v): f.append((flag, v))
            }
        }
        return f
    }

    /// `{"temperature":1.0,"top_p":0.95}`, keys in recipe order, numbers as written.
    public var samplingJSON: String {
        "{" + recipe.sampling.map { key, n in
            let text = n.text.matchesWhole(#"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"#) ? n.text : "\(n.value)"
            return "\"\(key)\":\(text)"
        }.joined(separator: ",") + "}"
    }

    func format(_ d: Double) -> String { d == d.rounded() ? String(Int(d)) : "\(d)" }

    /// Flags that differ per node (rendezvous, rank, the API server on the head), within the node's group.
    func rankFlags(node: NodeSpec, rank: Int, group: ServeGroup) -> [(String, String?)] {
        var f: [(String, String?)] = []
        let multiNode = group.nodes.count > 1
        if inventory.launcher == .mp, multiNode {
            f += [("nnodes", "\(group.nodes.count)"), ("node-rank", "\(rank)"),
                  ("master-addr", group.head.interconnectIP), ("master-port", "\(inventory.masterPort)")]
            if rank > 0 { f.append(("headless", nil)) }
        }
        if rank == 0 { f += [("host", "0.0.0.0"), ("port", "\(group.port)")] }
        return f
    }

    static func argv(_ flags: [(String, String?)]) -> [String] {
        flags.flatMap { flag, value in ["--\(flag)"] + (value.map { [$0] } ?? []) }
    }

    /// The `--config` YAML every node shares (long flag names as keys; JSON strings are valid YAML scalars).
    public func configYAML() -> String {
        var lines = ["# Written by sous for recipe \(recipe.name.escapingControls) on cluster \(inventory.cluster.escapingControls). Per-node flags are on the command line.",
                     "model: \(jsonString(recipe.model))"]
        for (flag, value) in sharedFlags() {
            if let value {
                let isNumber = Double(value) != nil && value.matchesWhole("-?[0-9.]+")
                lines.append("\(flag): \(isNumber ? value : jsonString(value))")
            } else {
                lines.append(flag.hasPrefix("no-") ? "\(flag.dropFirst(3)): false" : "\(flag): true")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func jsonString(_ s: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
        let text = String(decoding: data, as: UTF8.self)
        return String(text.dropFirst().dropLast())
    }

    // MARK: per node

    public func env(for node: NodeSpec, rank: Int) -> [(name: String, value: EnvValue)] {
        var e: [(String, EnvValue)] = [("VLLM_HOST_IP", .plain(node.interconnectIP))]
        for name in ["NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "UCX_NET_DEVICES"] {
            e.append((name, .plain(inventory.interface)))
        }
        if let hca = inventory.ncclIbHca { e.append(("NCCL_IB_HCA", .plain(hca))) }
        e.append(("PYTORCH_CUDA_ALLOC_CONF", .plain("expandable_segments:True")))
        e.append(("HF_HUB_OFFLINE", .plain("1")))
        if inventory.launcher == .ray {
            e.append(("RAY_memory_monitor_refresh_ms", .plain("0")))
            e.append(("VLLM_DISTRIBUTED_EXECUTOR_CONFIG", .plain(#"{"placement_group_options":{"strategy":"SPREAD"}}"#)))
        }
        for (name, value) in engine.env { e.append((name, .plain(value))) }
        if !engine.env.contains(where: { $0.name == EngineReady.variable }) {
            e.append((EngineReady.variable, .plain(EngineReady.value(deployment.engineReadyBudget))))
        }
        if rank == 0, let keyEnv = inventory.apiKeyEnv { e.append(("VLLM_API_KEY", .secret(fromLocalEnv: keyEnv))) }
        return e
    }

    func command(for node: NodeSpec, rank: Int, group: ServeGroup, form: ServeForm) throws(ShellQuote.Unrepresentable) -> NodeCommand {
        var docker = ["docker", "run", "-d", "--name", NodePaths.container,
                      "--gpus", "all", "--network", "host", "--ipc", "host", "--shm-size", inventory.shmSize]
        if inventory.ncclIbHca != nil {
            docker += ["--device", "/dev/infiniband", "--cap-add", "IPC_LOCK", "--ulimit", "memlock=-1"]
        }
        docker += ["-v", "\(inventory.hfCache(on: node)):\(NodePaths.hfCacheInContainer)",
                   "--env-file", NodePaths.envFile]
        if form == .config { docker += ["-v", "\(NodePaths.configFile):\(NodePaths.configInContainer):ro"] }
        docker += ["--label", "sous.cluster=\(inventory.cluster)", "--label", "sous.recipe=\(recipe.name)",
                   "--label", "sous.rank=\(rank)"]
        if deployment.isMultiGroup { docker += ["--label", "sous.group=\(group.name)"] }

        let serve: [String]
        switch form {
        case .flags: serve = ["serve", recipe.model] + Self.argv(sharedFlags() + rankFlags(node: node, rank: rank, group: group))
        case .config: serve = ["serve", "--config", NodePaths.configInContainer] + Self.argv(rankFlags(node: node, rank: rank, group: group))
        }

        switch inventory.launcher {
        case .mp where group.nodes.count > 1:
            // Back by itself after a reboot, with its group (Keeper).
            docker += ["--restart", "unless-stopped", "--entrypoint", "python3", inventory.image]
                + Keeper.containerArgs(rank: rank, group: group, masterPort: inventory.masterPort, servedModel: recipe.servedModelName, serve: serve)
        case .mp:
            docker += ["--restart", "unless-stopped", "--entrypoint", "vllm", inventory.image] + serve
        case .ray where rank == 0:
            let start = ["ray", "start", "--head", "--port", "\(NodePaths.rayPort)", "--node-ip-address", node.interconnectIP]
            let script = try ShellQuote.join(start) + " && exec " + ShellQuote.join(["vllm"] + serve)
            docker += ["--entrypoint", "bash", inventory.image, "-c", script]
        case .ray:
            docker += ["--entrypoint", "ray", inventory.image, "start", "--block",
                       "--address", "\(group.head.interconnectIP):\(NodePaths.rayPort)", "--node-ip-address", node.interconnectIP]
        }
        // Reject NUL and other unrepresentable input before anything is shown or run.
        _ = try ShellQuote.join(docker)
        var command = NodeCommand(node: node, rank: rank, group: group.index, env: env(for: node, rank: rank), dockerArgv: docker,
                                  serveArgv: inventory.launcher == .ray && rank > 0 ? [] : serve)
        command.containerArgs = Array(docker[(docker.lastIndex(of: inventory.image)! + 1)...])
        _ = try command.envFile()
        return command
    }
}
