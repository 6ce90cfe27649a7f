import Foundation

/// Will it fit? The memory budget of one rank, from the checkpoint's config.json and safetensors index.
public struct FitInput: Sendable {
    /// config.json of the checkpoint, as read.
    public var configData: Data
    var config: [String: Any] { (try? JSONSerialization.jsonObject(with: configData) as? [String: Any]) ?? [:] }
    /// metadata.total_size of model.safetensors.index.json (bytes of all weights).
    public var weightBytes: Int
    /// Total memory of one node in bytes (unified memory: /proc/meminfo MemTotal).
    public var totalMemory: Int

    public init(config: [String: Any], weightBytes: Int, totalMemory: Int) {
        self.configData = (try? JSONSerialization.data(withJSONObject: config)) ?? Data()
        self.weightBytes = weightBytes
        self.totalMemory = totalMemory
    }

    /// Reads the checkpoint's files (untrusted: from the Hub or a node's cache). A size Fit reads that is not a
    /// plausible whole number throws `Implausible`, naming the file and the key.
    public init(configJSON: String, indexJSON: String, totalMemory: Int) throws {
        guard let c = try JSONSerialization.jsonObject(with: Data(configJSON.utf8)) as? [String: Any] else { throw UsageError("config.json is not a JSON object") }
        guard let i = try JSONSerialization.jsonObject(with: Data(indexJSON.utf8)) as? [String: Any],
              let size = (i["metadata"] as? [String: Any])?["total_size"], !(size is NSNull) else {
            throw UsageError("model.safetensors.index.json has no metadata.total_size")
        }
        guard let total = Fit.wholeNumber(size, in: 0...Fit.maxWeightBytes) else {
            throw Implausible(file: "model.safetensors.index.json", key: "metadata.total_size", value: size, range: 0...Fit.maxWeightBytes)
        }
        if let problem = Fit.implausible(c) { throw problem }
        self.init(config: c, weightBytes: total, totalMemory: totalMemory)
    }

    /// A checkpoint file states a size no model has (negative, fractional, or past what the arithmetic holds).
    public struct Implausible: SousFailure {
        public var file: String, key: String, value: String
        public var range: ClosedRange<Int>
        init(file: String, key: String, value: Any, range: ClosedRange<Int>) {
            (self.file, self.key, self.value, self.range) = (file, key, "\(value)".escapingControls, range)
        }
        public var message: String { "\(file) has an implausible \(key): \(value) (a whole number \(range.lowerBound)…\(range.upperBound) is expected)" }
        public var hint: String? { "the checkpoint's metadata is corrupt or not a model's: fetch it again (sous model --fetch) or check the repository" }
        public var exitCode: ExitStatus { .checkFailed }
    }
}

/// Overflow-checked arithmetic for figures read from checkpoints: nil where plain `*` and `+` would trap.
enum Checked {
    static func product(_ factors: Int...) -> Int? {
        var result = 1
        for f in factors {
            let (p, overflow) = result.multipliedReportingOverflow(by: f)
            if overflow { return nil }
            result = p
        }
        return result
    }

    static func sum(_ terms: some Sequence<Int>) -> Int? {
        var result = 0
        for t in terms {
            let (s, overflow) = result.addingReportingOverflow(t)
            if overflow { return nil }
            result = s
        }
        return result
    }
}

public struct FitReport: Sendable, Encodable {
    public enum Verdict: String, Sendable, Encodable { case fits, fitsWithWarnings = "fits with warnings", doesNotFit = "does not fit" }
    public var weights_per_rank: Int
    public var attention_layers: Int
    public var kv_bytes_per_token_per_rank: Int
    /// Hybrid Mamba models: the fixed recurrent state of one sequence, per rank.
    public var mamba_state_bytes_per_sequence: Int
    /// Sliding-window attention layers (gpt-oss's `sliding_attention`): not in the per-token KV figure; each holds at
    /// most its window per sequence.
    public var windowed_layers: Int = 0
    /// Their KV of one full window, per sequence and rank.
    public var window_kv_bytes_per_sequence: Int = 0
    public var budget: Int
    public var allowance: Int
    public var kv_cache_bytes: Int
    public var kv_tokens: Int
    public var max_num_seqs: Int
    /// The longest context every one of max_num_seqs sequences can hold at once.
    public var context_at_concurrency: Int
    public var os_headroom: Int
    public var verdict: Verdict
    public var messages: [String]
}

public enum Fit {
    /// Activations at the profiling peak, CUDA graphs and NCCL buffers: a stated allowance per rank.
    public static let allowance = 4 * 1024 * 1024 * 1024
    static let gib = 1024.0 * 1024 * 1024
    /// Every figure of the report in GiB, one decimal.
    static func g(_ b: Int) -> String { String(format: "%.1f GiB", Double(b) / gib) }

    static func int(_ c: [String: Any], _ keys: String...) -> Int? {
        for k in keys { if let v = c[k] as? Int { return v } }
        return nil
    }

    /// The config.json sizes Fit reads (layers, heads, dimensions, Mamba state), and the largest any model has
    /// by far: every product of them is still overflow-checked.
    static let sizeKeys = ["num_hidden_layers", "n_layer", "num_attention_heads", "n_head", "num_key_value_heads", "head_dim",
                           "hidden_size", "mamba_num_heads", "mamba_head_dim", "ssm_state_size", "mamba_d_state", "n_groups",
                           "mamba_n_groups", "conv_kernel", "mamba_d_conv"]
    static let maxSize = 1 << 24
    /// 1 PiB of weights.
    static let maxWeightBytes = 1 << 50

    /// A JSON number that is a whole number in the range (null and absent keys are read as absent elsewhere).
    static func wholeNumber(_ v: Any, in range: ClosedRange<Int>) -> Int? {
        guard let n = v as? Int, range.contains(n) else { return nil }
        return n
    }

    /// The first size of config.json (or its text_config) that is present but not a plausible whole number.
    static func implausible(_ config: [String: Any], prefix: String = "") -> FitInput.Implausible? {
        for key in sizeKeys {
            if let v = config[key], !(v is NSNull), wholeNumber(v, in: 0...maxSize) == nil {
                return FitInput.Implausible(file: "config.json", key: prefix + key, value: v, range: 0...maxSize)
            }
        }
        return (config["text_config"] as? [String: Any]).flatMap { implausible($0, prefix: "text_config.") }
    }

    /// Full-attention layers, sliding-window layers and Mamba layers: `*` and `M` in Nemotron-H's
    /// hybrid_override_pattern (`E`, MoE, holds no cache); the entries of layers_block_type / layer_types
    /// (`sliding_attention` windowed, other `…attention` full, `mamba`/`linear…` recurrent); else every layer full.
    static func attentionLayers(_ c: [String: Any]) -> (attention: Int, mamba: Int, windowed: Int) {
        let layers = int(c, "num_hidden_layers", "n_layer") ?? 0
        if let pattern = c["hybrid_override_pattern"] as? String {
            return (pattern.filter { $0 == "*" }.count, pattern.filter { $0 == "M" }.count, 0)
        }
        if let types = (c["layers_block_type"] ?? c["layer_types"]) as? [String] {
            let windowed = types.filter { $0 == "sliding_attention" }.count
            let attention = types.filter { $0.contains("attention") && $0 != "sliding_attention" && !$0.hasPrefix("linear") }.count
            return (attention, types.filter { $0.contains("mamba") || $0.hasPrefix("linear") }.count, windowed)
        }
        return (layers, 0, 0)
    }

    static func dtypeBytes(_ name: String?) -> Int {
        switch name ?? "bfloat16" {
        case "float32": return 4
        case let n where n.hasPrefix("fp8") || n == "float8": return 1
        default: return 2
        }
    }

    /// A figure that does not fit in the arithmetic: the report says so instead of trapping.
    struct Overflow: Error { var what: String }

    /// The budget of one rank. Never traps: an input with an implausible size, or figures whose products
    /// overflow, give a "does not fit" report that says which.
    public static func compute(_ input: FitInput, tp: Int, engine: EngineSettings, profile: HardwareProfile?) -> FitReport {
        do { return try figures(input, tp: tp, engine: engine, profile: profile) } catch {
            return FitReport(weights_per_rank: 0, attention_layers: 0, kv_bytes_per_token_per_rank: 0, mamba_state_bytes_per_sequence: 0,
                             budget: 0, allowance: allowance, kv_cache_bytes: 0, kv_tokens: 0, max_num_seqs: 0, context_at_concurrency: 0,
                             os_headroom: 0, verdict: .doesNotFit, messages: ["cannot size the checkpoint: \(error.what)"])
        }
    }

    static func figures(_ input: FitInput, tp: Int, engine: EngineSettings, profile: HardwareProfile?) throws(Overflow) -> FitReport {
        if let problem = implausible(input.config) { throw Overflow(what: problem.message) }
        guard input.weightBytes >= 0, input.totalMemory >= 0, (1...maxSize).contains(tp) else {
            throw Overflow(what: "negative weights (\(input.weightBytes) B), memory (\(input.totalMemory) B) or ranks (\(tp))")
        }
        func checked(_ value: Int?, _ what: String) throws(Overflow) -> Int {
            guard let value else { throw Overflow(what: "\(what) overflows: the checkpoint's sizes are implausible") }
            return value
        }
        let c = (input.config["text_config"] as? [String: Any]).map { input.config.merging($0) { _, b in b } } ?? input.config
        let heads = int(c, "num_attention_heads", "n_head") ?? 1
        let kvHeads = int(c, "num_key_value_heads") ?? heads
        let headDim = int(c, "head_dim") ?? ((int(c, "hidden_size") ?? 0) / max(heads, 1))
        let (attention, mamba, windowed) = attentionLayers(c)
        let kvDtype = engine.kvCacheDtype == "auto" ? c["torch_dtype"] as? String ?? c["dtype"] as? String : engine.kvCacheDtype
        // K and V for every attention layer; KV heads split across ranks (replicated when fewer than ranks).
        let kvPerToken = try checked(Checked.product(2, attention, (kvHeads + tp - 1) / tp, headDim, dtypeBytes(kvDtype)), "KV bytes per token")
        // Sliding-window layers keep at most `sliding_window` tokens of K and V per sequence, whatever its length.
        let window = windowed > 0 ? (int(c, "sliding_window") ?? 0) : 0
        let windowState = try checked(Checked.product(2, windowed, (kvHeads + tp - 1) / tp, headDim, dtypeBytes(kvDtype), window), "the sliding-window KV per sequence")
        // Mamba: per sequence, the SSM state (heads × head_dim × state, in mamba_ssm_cache_dtype) and the conv
        // state ((kernel − 1) × (heads × head_dim + 2 × groups × state), model dtype), split across ranks.
        var mambaState = 0
        if mamba > 0 {
            let mHeads = int(c, "mamba_num_heads") ?? 0, mHeadDim = int(c, "mamba_head_dim") ?? 0
            let state = int(c, "ssm_state_size", "mamba_d_state") ?? 0, groups = int(c, "n_groups", "mamba_n_groups") ?? 1
            let kernel = int(c, "conv_kernel", "mamba_d_conv") ?? 4
            let ssmDtype: String? = engine.extraArgs.first { $0.flag == "mamba-ssm-cache-dtype" }.flatMap { if case .value(let v) = $0.value { return v } else { return nil } }
            let ssm = Checked.product(mHeads, mHeadDim, state, dtypeBytes(ssmDtype ?? c["torch_dtype"] as? String))
            let channels = Checked.product(mHeads, mHeadDim).flatMap { hd in Checked.product(2, groups, state).flatMap { Checked.sum([hd, $0]) } }
            let conv = channels.flatMap { Checked.product(max(kernel - 1, 0), $0, dtypeBytes(c["torch_dtype"] as? String)) }
            let perLayer = ssm.flatMap { s in conv.flatMap { Checked.sum([s, $0]) } }
            mambaState = try checked(perLayer.flatMap { Checked.product(mamba, $0) }, "the Mamba state per sequence") / tp
        }
        let maxSeqs = max(1, engine.extraArgs.first { $0.flag == "max-num-seqs" }.flatMap { if case .value(let v) = $0.value { return Int(v) } else { return nil } } ?? 256)
        let weights = input.weightBytes / tp
        let budgetBytes = Double(input.totalMemory) * engine.gpuMemoryUtilization
        guard budgetBytes >= 0, budgetBytes < 0x1p62 else { throw Overflow(what: "the budget (\(input.totalMemory) B × \(engine.gpuMemoryUtilization))") }
        let budget = Int(budgetBytes)
        let mambaAll = try checked(Checked.product(try checked(Checked.sum([mambaState, windowState]), "the state per sequence"), maxSeqs), "the Mamba and window state of \(maxSeqs) sequences")
        let kvCache = budget - (try checked(Checked.sum([weights, allowance, mambaAll]), "weights + allowance + Mamba state"))
        let kvTokens = kvPerToken > 0 ? max(0, kvCache) / kvPerToken : 0
        let atConcurrency = min(engine.maxModelLen, kvTokens / maxSeqs)
        let os = input.totalMemory - budget
        var messages: [String] = []
        var verdict = FitReport.Verdict.fits
        if kvCache <= 0 {
            verdict = .doesNotFit
            let need = (Double(weights) + Double(allowance) + Double(mambaAll) + Double(kvPerToken) * Double(engine.maxModelLen)) / Double(input.totalMemory)
            messages.append("weights \(g(weights)) + allowance \(g(allowance)) exceed the budget \(g(budget)); gpu_memory_utilization \(String(format: "%.2f", need)) would be needed")
        } else if kvTokens < engine.maxModelLen {
            verdict = .doesNotFit
            messages.append("max_model_len \(engine.maxModelLen) does not fit: the KV cache holds \(kvTokens) tokens (vLLM refuses to start); the largest that fits is \(kvTokens / 1024 * 1024)")
        }
        if let p = profile, p.unifiedMemory, engine.gpuMemoryUtilization > p.maxSafeGpuMemoryUtilization {
            if verdict == .fits { verdict = .fitsWithWarnings }
            messages.append("only \(g(os)) left for the OS (\(String(format: "%.2f", 1 - engine.gpuMemoryUtilization)) of \(g(input.totalMemory))); \(p.name) wants at least \(String(format: "%.2f", 1 - p.maxSafeGpuMemoryUtilization))")
        }
        if verdict != .doesNotFit, kvTokens / maxSeqs < engine.maxModelLen {
            if verdict == .fits { verdict = .fitsWithWarnings }
            messages.append("\(maxSeqs) sequences of \(engine.maxModelLen) tokens do not fit at once: each gets \(atConcurrency) when all are full")
        }
        return FitReport(weights_per_rank: weights, attention_layers: attention, kv_bytes_per_token_per_rank: kvPerToken,
                         mamba_state_bytes_per_sequence: mambaState, windowed_layers: windowed, window_kv_bytes_per_sequence: windowState,
                         budget: budget, allowance: allowance, kv_cache_bytes: max(0, kvCache),
                         kv_tokens: kvTokens, max_num_seqs: maxSeqs, context_at_concurrency: atConcurrency, os_headroom: os,
                         verdict: verdict, messages: messages)
    }

    /// The agent's context limit against what fits.
    public static func clientMessage(_ r: FitReport, clientContext: Int) -> String? {
        clientContext > r.kv_tokens ? "client.context \(clientContext) is more than the KV cache holds (\(r.kv_tokens)): agents will be refused mid-session" : nil
    }

    public static func text(_ r: FitReport) -> String {
        var rows: [(String, String)] = [
            ("weights per rank", g(r.weights_per_rank)),
            ("KV per token per rank", "\(r.kv_bytes_per_token_per_rank) B (\(r.attention_layers) attention layers)"),
        ]
        if r.windowed_layers > 0 {
            rows.append(("sliding-window KV", String(format: "%.1f MiB per seq per rank (%d windowed layers, fixed, × %d sequences)", Double(r.window_kv_bytes_per_sequence) / 1048576, r.windowed_layers, r.max_num_seqs)))
        }
        if r.mamba_state_bytes_per_sequence > 0 {
            rows.append(("Mamba state per seq", String(format: "%.1f MiB per rank (fixed, × %d sequences)", Double(r.mamba_state_bytes_per_sequence) / 1048576, r.max_num_seqs)))
        }
        rows += [
            ("budget (× gmu)", "\(g(r.budget)) − allowance \(g(r.allowance)) for activations and CUDA graphs"),
            ("KV cache", "\(g(r.kv_cache_bytes)) = \(r.kv_tokens) tokens"),
            ("at \(r.max_num_seqs) sequences", "\(r.context_at_concurrency) tokens each"),
            ("left for the OS", g(r.os_headroom)),
            ("verdict", r.verdict.rawValue),
        ]
        let lines = rows.map { $0.0.padding(toLength: 22, withPad: " ", startingAt: 0) + $0.1 }
        return (lines + r.messages.map { "  - \($0)" }).joined(separator: "\n") + "\n"
    }
}
