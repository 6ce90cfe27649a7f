import Foundation
import Yams

/// A value for a `vllm serve` flag given in `extra_args`: a bare flag, its negation, or a value.
public enum FlagValue: Sendable, Equatable {
    case on
    case off
    case value(String)
}

/// A number as written in YAML: an integer stays an integer, a decimal keeps its spelling.
public struct Number: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var value: Double
    public var description: String { text }
}

/// Engine settings a hardware profile may override.
public struct EngineSettings: Sendable, Equatable {
    public var kvCacheDtype: String
    public var maxModelLen: Int
    public var gpuMemoryUtilization: Double
    public var enableChunkedPrefill: Bool
    /// Other long `vllm serve` flags, in file order, with snake_case names turned into `--kebab-case`.
    public var extraArgs: [(flag: String, value: FlagValue)]
    public var env: [(name: String, value: String)]

    public static func == (l: Self, r: Self) -> Bool {
        l.kvCacheDtype == r.kvCacheDtype && l.maxModelLen == r.maxModelLen
            && l.gpuMemoryUtilization == r.gpuMemoryUtilization && l.enableChunkedPrefill == r.enableChunkedPrefill
            && l.extraArgs.map(\.flag) == r.extraArgs.map(\.flag) && l.extraArgs.map(\.value) == r.extraArgs.map(\.value)
            && l.env.map(\.name) == r.env.map(\.name) && l.env.map(\.value) == r.env.map(\.value)
    }
}

/// How the checkpoint is quantized: `auto` lets vLLM read it from the checkpoint (no flag rendered).
public enum Quantization: Sendable, Equatable {
    case auto
    case method(String, reason: String)
}

/// One model variant, derived from its model card: everything `vllm serve` needs that does not depend on the nodes.
public struct Recipe: Sendable {
    public var file: String
    public var name: String
    public var model: String
    public var revision: String?
    public var servedModelName: String
    public var source: String
    public var minVLLMVersion: VLLMVersion
    public var toolCallParser: String
    public var reasoningParser: String?
    public var quantization: Quantization
    public var tensorParallelSize: Int
    public var trustRemoteCode: Bool
    public var engine: EngineSettings
    /// Generation-config override, in file order.
    public var sampling: [(key: String, value: Number)]
    public var clientContext: Int
    public var clientOutput: Int
    /// The `tool_choice` modes the model handles; the gates check only these (`auto` always).
    public var toolChoices: [ToolChoiceMode] = [.auto]
    /// Per hardware profile, the engine settings with that profile's overrides applied.
    var hardwareEngines: [String: EngineSettings]
    /// Where each key came from, for errors that need both files (keyed by key path).
    public var locations: [String: SourceLocation]

    /// The engine settings after the hardware profile's overrides (extra_args and env merge by name).
    public func engine(for profile: String?) -> EngineSettings {
        profile.flatMap { hardwareEngines[$0] } ?? engine
    }

    /// Where a key was written (a nested key falls back to its parent).
    public func location(of keyPath: String) -> SourceLocation? {
        locations[keyPath] ?? locations[keyPath.split(separator: ".").first.map(String.init) ?? keyPath]
    }

    public var hardwareProfiles: [String] { hardwareEngines.keys.sorted() }
}

/// Reads and validates recipe files.
public enum RecipeReader {
    static let topKeys = ["name", "model", "revision", "served_model_name", "source", "min_vllm_version", "parsers",
                          "quantization", "quantization_reason", "kv_cache_dtype", "max_model_len", "gpu_memory_utilization",
                          "tensor_parallel_size", "trust_remote_code", "enable_chunked_prefill", "sampling", "client",
                          "tool_choice", "hardware", "extra_args", "env"]
    static let engineKeys = ["kv_cache_dtype", "max_model_len", "gpu_memory_utilization", "enable_chunked_prefill", "extra_args", "env"]
    static let samplingKeys = ["temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                               "repetition_penalty", "max_new_tokens"]
    /// vLLM's `--kv-cache-dtype` choices.
    static let kvCacheDtypes = ["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc", "fp8_ds_mla"]
    /// Quantization methods vLLM registers that people set by hand (the rest come from the checkpoint).
    static let quantizationMethods = ["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "fbgemm_fp8", "modelopt",
                                      "modelopt_fp4", "modelopt_mixed", "mxfp4", "compressed-tensors", "bitsandbytes",
                                      "gguf", "experts_int8", "auto-round", "torchao", "ptpc_fp8", "quark", "inc"]
    /// Flags sous renders itself; setting them through extra_args would fight the recipe or the inventory.
    static let managedFlags: [String: String] = [
        "model": "model", "served-model-name": "served_model_name", "revision": "revision",
        "tensor-parallel-size": "tensor_parallel_size", "tool-call-parser": "parsers.tool_call",
        "reasoning-parser": "parsers.reasoning", "enable-auto-tool-choice": "parsers.tool_call",
        "quantization": "quantization", "kv-cache-dtype": "kv_cache_dtype", "max-model-len": "max_model_len",
        "gpu-memory-utilization": "gpu_memory_utilization", "trust-remote-code": "trust_remote_code",
        "enable-chunked-prefill": "enable_chunked_prefill", "override-generation-config": "sampling",
        "host": "the inventory (head only)", "port": "the inventory's port", "nnodes": "the inventory's nodes",
        "node-rank": "the inventory's nodes", "master-addr": "the inventory's head interconnect_ip",
        "master-port": "the inventory's interconnect.master_port", "headless": "the inventory's roles",
        "distributed-executor-backend": "the inventory's launcher", "config": "`sous render --format config`",
        "api-key": "the inventory's api_key_env (the key never goes on a command line)",
    ]
    /// Environment variables sous writes itself from the inventory.
    static let managedEnv: [String: String] = [
        "VLLM_HOST_IP": "interconnect_ip", "NCCL_SOCKET_IFNAME": "interconnect.interface",
        "GLOO_SOCKET_IFNAME": "interconnect.interface", "TP_SOCKET_IFNAME": "interconnect.interface",
        "UCX_NET_DEVICES": "interconnect.interface", "NCCL_IB_HCA": "interconnect.nccl_ib_hca",
        "VLLM_API_KEY": "api_key_env", "HF_HUB_OFFLINE": "(always 1)", "HF_TOKEN": "a 0600 token file (never the recipe)",
    ]

    /// Loads one recipe file; throws `ConfigErrors` listing every problem found.
    /// Loads a file; `directory` resolves a relative path without changing how the file is named in messages.
    public static func load(path: String, relativeTo directory: String? = nil) throws(ConfigErrors) -> (Recipe, [ConfigIssue]) {
        let sink = IssueSink(file: path)
        let resolved = path.hasPrefix("/") ? path : directory.map { "\($0)/\(path)" } ?? path
        guard let text = readText(resolved, sink: sink) else { throw ConfigErrors(sink.issues) }
        return try parse(text, file: path, sink: sink)
    }

    public static func parse(_ text: String, file: String) throws(ConfigErrors) -> (Recipe, [ConfigIssue]) {
        try parse(text, file: file, sink: IssueSink(file: file))
    }

    static func parse(_ text: String, file: String, sink: IssueSink) throws(ConfigErrors) -> (Recipe, [ConfigIssue]) {
        guard let root = parseYAML(text, sink: sink), let map = root.mapping(allowed: topKeys) else {
            throw ConfigErrors(sink.issues)
        }
        var locations: [String: SourceLocation] = [:]
        for entry in map.entries { locations[entry.key] = entry.value.location }

        let name = map.required("name")?.string()
        if let name, !name.matchesWhole("[a-z0-9][a-z0-9._-]*") {
            sink.error(map["name"]?.node, "name", "must be lowercase letters, digits, '.', '_' or '-'")
        }
        let model = map.required("model", what: "the Hugging Face repo id, e.g. nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4")?.string()
        if let model, !model.matchesWhole("[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*") {
            sink.error(map["model"]?.node, "model", "`\(model)` is not a Hugging Face repo id (ORG/NAME)")
        }
        let revision = map["revision"]?.string()
        if let revision, !revision.matchesWhole("[A-Za-z0-9][A-Za-z0-9._-]*") || revision.contains("..") {
            sink.error(map["revision"]?.node, "revision", "`\(revision)` is not a commit hash, branch or tag name", hint: "the 40-hex commit from the model's \"Files and versions\" page pins it best")
        }
        let served = map.required("served_model_name", what: "the id clients use; /v1/models returns it")?.string()
        if let served, served.isEmpty || served.contains(where: { $0.isWhitespace }) {
            sink.error(map["served_model_name"]?.node, "served_model_name", "must be non-empty and contain no spaces")
        }
        let source = map.required("source", what: "the model card URL the values come from")?.string()
        if let source, !(source.hasPrefix("https://") || source.hasPrefix("http://")) {
            sink.error(map["source"]?.node, "source", "must be the model card's URL")
        }
        var minVersion: VLLMVersion?
        if let v = map.required("min_vllm_version")?.string() {
            minVersion = VLLMVersion(v)
            if minVersion == nil { sink.error(map["min_vllm_version"]?.node, "min_vllm_version", "`\(v)` is not a version like 0.17.1") }
        }

        var toolCall: String?, reasoning: String?
        if let parsers = map.required("parsers")?.mapping(allowed: ["tool_call", "reasoning"]) {
            for entry in parsers.entries { locations[entry.value.path] = entry.value.location }
            toolCall = parsers.required("tool_call", what: "vLLM's --tool-call-parser name")?.string()
            reasoning = parsers["reasoning"]?.string()
            if let toolCall { checkParser(toolCall, kind: .toolCall, at: parsers["tool_call"]!, minVersion: minVersion, sink: sink) }
            if let reasoning { checkParser(reasoning, kind: .reasoning, at: parsers["reasoning"]!, minVersion: minVersion, sink: sink) }
        }

        var quantization: Quantization = .auto
        if let q = map.required("quantization", what: "auto, or a method with quantization_reason")?.string() {
            if q != "auto" {
                if !quantizationMethods.contains(q) {
                    let guess = didYouMean(q, in: ["auto"] + quantizationMethods)
                    sink.error(map["quantization"]?.node, "quantization", "unknown method `\(q)`",
                               hint: guess.map { "did you mean `\($0)`?" } ?? "use auto: vLLM reads the method from the checkpoint")
                }
                if let reason = map["quantization_reason"]?.string(), !reason.isEmpty {
                    quantization = .method(q, reason: reason)
                } else {
                    sink.error(map["quantization"]?.node, "quantization",
                               "an explicit method needs quantization_reason (a pre-quantized checkpoint carries its own config and vLLM detects it)",
                               hint: "write `quantization: auto`, or add `quantization_reason:` quoting the model card")
                }
            } else if map["quantization_reason"] != nil {
                sink.warning(map["quantization_reason"]?.node, "quantization_reason", "ignored: quantization is auto")
            }
        }

        let tp = map.required("tensor_parallel_size")?.int(range: 1...1024)
        let trust = map["trust_remote_code"]?.bool() ?? false
        var engine = EngineSettings(kvCacheDtype: "auto", maxModelLen: 0, gpuMemoryUtilization: 0,
                                    enableChunkedPrefill: false, extraArgs: [], env: [])
        _ = map.required("max_model_len")
        _ = map.required("gpu_memory_utilization")
        applyEngine(map, to: &engine, sink: sink)

        var sampling: [(String, Number)] = []
        if let s = map["sampling"]?.mapping(allowed: samplingKeys) {
            for entry in s.entries {
                guard let d = entry.value.double() else { continue }
                sampling.append((entry.key, Number(text: entry.value.node.scalar?.string ?? "\(d)", value: d)))
            }
        }

        var context: Int?, output: Int?
        if let c = map.required("client", what: "context and output limits for agents")?.mapping(allowed: ["context", "output"]) {
            context = c.required("context")?.int(range: 1...100_000_000)
            output = c.required("output")?.int(range: 1...100_000_000)
            if let context, engine.maxModelLen > 0, context >= engine.maxModelLen {
                sink.error(c["context"]?.node, "client.context",
                           "\(context) must stay below max_model_len (\(engine.maxModelLen)): agents pack prompts up to it and the server rejects them",
                           hint: "leave a margin for the output, e.g. \(engine.maxModelLen - (output ?? engine.maxModelLen / 8))")
            }
            if let output, let context, output >= context {
                sink.error(c["output"]?.node, "client.output", "\(output) must be below client.context (\(context))")
            }
        }

        var toolChoices: [ToolChoiceMode] = [.auto]
        if let list = map["tool_choice"] {
            let items = list.sequence() ?? []
            if list.sequence() == nil { sink.error(list.node, "tool_choice", "must be a list, e.g. [auto, required, named]") }
            toolChoices = []
            for item in items {
                guard let text = item.string() else { continue }
                guard let mode = ToolChoiceMode(rawValue: text) else {
                    sink.error(item.node, item.path, "`\(text)` is not a tool_choice mode", hint: "auto, required or named")
                    continue
                }
                if !toolChoices.contains(mode) { toolChoices.append(mode) }
            }
            if !items.isEmpty, !toolChoices.contains(.auto) {
                sink.error(list.node, "tool_choice", "must include auto: it is what coding agents send, and what the parsers serve",
                           hint: "tool_choice: [auto\(toolChoices.map { ", " + $0.rawValue }.joined())]")
            }
            if toolChoices.isEmpty { toolChoices = [.auto] }
        }

        var hardware: [String: EngineSettings] = [:]
        if let h = map["hardware"]?.mapping(allowed: nil) {
            for entry in h.entries {
                guard let o = entry.value.mapping(allowed: engineKeys) else { continue }
                if !HardwareProfile.known.keys.contains(entry.key) {
                    sink.error(entry.keyNode, entry.value.path, "unknown hardware profile",
                               hint: "known profiles: \(HardwareProfile.known.keys.sorted().joined(separator: ", "))")
                }
                var overridden = engine
                applyEngine(o, to: &overridden, sink: sink)
                hardware[entry.key] = overridden
            }
        }

        guard !sink.hasErrors, let name, let model, let served, let source, let minVersion, let toolCall, let tp,
              let context, let output else {
            throw ConfigErrors(sink.issues)
        }
        let recipe = Recipe(file: file, name: name, model: model, revision: revision, servedModelName: served, source: source,
                            minVLLMVersion: minVersion, toolCallParser: toolCall, reasoningParser: reasoning,
                            quantization: quantization, tensorParallelSize: tp, trustRemoteCode: trust, engine: engine,
                            sampling: sampling, clientContext: context, clientOutput: output,
                            toolChoices: toolChoices, hardwareEngines: hardware, locations: locations)
        return (recipe, sink.issues)
    }

    static func checkParser(_ name: String, kind: ParserCatalog.Kind, at value: YValue, minVersion: VLLMVersion?, sink: IssueSink) {
        let catalog = ParserCatalog.builtin
        guard let first = catalog.firstRelease(with: name, kind: kind) else {
            let all = Set(catalog.releases.flatMap { Array(catalog.table($0, kind).keys) }).sorted()
            sink.error(value.node, value.path, "`\(name)` is not a \(kind.rawValue) parser in any vLLM release sous knows (\(catalog.releases.first!.version)–\(catalog.releases.last!.version))",
                       hint: didYouMean(name, in: all).map { "did you mean `\($0)`?" } ?? "see `sous parsers --kind \(kind.rawValue)`")
            return
        }
        if let minVersion, first > minVersion, catalog.release(atOrBelow: minVersion).version < first,
           catalog.releases.contains(where: { $0.version <= minVersion }) {
            sink.error(value.node, value.path, "`\(name)` first appears in vLLM \(first), but min_vllm_version is \(minVersion)",
                       hint: "raise min_vllm_version to \(first)")
        }
    }

    /// Reads the engine keys present in `map` into `engine` (used for the base recipe and each hardware override).
    static func applyEngine(_ map: YMap, to engine: inout EngineSettings, sink: IssueSink) {
        if let v = map["kv_cache_dtype"]?.string() {
            if kvCacheDtypes.contains(v) { engine.kvCacheDtype = v } else {
                sink.error(map["kv_cache_dtype"]?.node, map["kv_cache_dtype"]!.path, "`\(v)` is not a vLLM KV cache dtype",
                           hint: didYouMean(v, in: kvCacheDtypes).map { "did you mean `\($0)`?" } ?? "one of: \(kvCacheDtypes.joined(separator: ", "))")
            }
        }
        if let v = map["max_model_len"]?.int(range: 1...100_000_000) { engine.maxModelLen = v }
        if let node = map["gpu_memory_utilization"], let v = node.double() {
            if v > 0, v < 1 { engine.gpuMemoryUtilization = v } else {
                sink.error(node.node, node.path, "\(node.node.scalar?.string ?? "\(v)") must be between 0 and 1 (exclusive): the fraction of GPU memory vLLM may take")
            }
        }
        if let v = map["enable_chunked_prefill"]?.bool() { engine.enableChunkedPrefill = v }
        if let extra = map["extra_args"]?.mapping(allowed: nil) {
            for entry in extra.entries {
                let flag = entry.key.replacingOccurrences(of: "_", with: "-")
                if !flag.matchesWhole("[a-z0-9][a-z0-9-]*") {
                    sink.error(entry.keyNode, entry.value.path, "not a long vllm serve flag name (write it without leading dashes, e.g. max_num_seqs)")
                    continue
                }
                if let owner = managedFlags[flag] {
                    sink.error(entry.keyNode, entry.value.path, "--\(flag) is rendered by sous from \(owner); remove it from extra_args")
                    continue
                }
                let value: FlagValue
                if case .scalar(let s) = entry.value.node, s.style == .plain, s.string == "true" || s.string == "false" {
                    value = s.string == "true" ? .on : .off
                } else if let text = entry.value.string() {
                    value = .value(text)
                } else { continue }
                engine.extraArgs.removeAll { $0.flag == flag }
                engine.extraArgs.append((flag, value))
            }
        }
        if let env = map["env"]?.mapping(allowed: nil) {
            for entry in env.entries {
                let name = entry.key
                if !name.matchesWhole(InventoryReader.envNamePattern) {
                    sink.error(entry.keyNode, entry.value.path, "not an environment variable name")
                    continue
                }
                if name == "NCCL_IB_GID_INDEX" {
                    sink.error(entry.keyNode, entry.value.path, "never pin NCCL_IB_GID_INDEX: the RoCE GID table drifts and a pinned index hangs the tensor-parallel handshake",
                               hint: "remove it; NCCL picks the right GID itself")
                    continue
                }
                if let owner = managedEnv[name] {
                    sink.error(entry.keyNode, entry.value.path, "\(name) is written by sous from \(owner); remove it from env")
                    continue
                }
                guard let value = entry.value.string() else { continue }
                engine.env.removeAll { $0.name == name }
                engine.env.append((name, value))
            }
        }
    }
}

extension Node {
    var scalar: Node.Scalar? { if case .scalar(let s) = self { return s } else { return nil } }
}
