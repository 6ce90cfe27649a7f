import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// The simulated Hugging Face hub's repositories: one directory per repository (`<hub>/ORG/NAME/`) holding
/// checkpoints in the real file formats — config.json, hf_quant_config.json, a tokenizer, a safetensors index and
/// shards whose headers are real safetensors headers — and `.sim-repo.json` (commit, gated, every file's size, git
/// blob id and, for the LFS-tracked shards, the content's sha256), which `SimHubServer` serves.
///
/// The shipped recipes' checkpoints follow the published ones: their config.json fields, their quantization
/// configs, real tensor names, dtypes and shapes for a few layers, and the index's `metadata.total_size` as
/// published (what `sous fit` sizes the weights by). The shards hold only those few tensors, so they are small; each
/// shard's size is what its own header declares (what `sous model` checks). The hub itself cannot be reached from
/// here: each figure names where it was read.
public enum SimHub {
    /// One tensor of a shard: its name, safetensors dtype and shape.
    public struct Tensor: Sendable {
        public var name: String, dtype: String, shape: [Int]
        public init(_ name: String, _ dtype: String, _ shape: [Int]) { (self.name, self.dtype, self.shape) = (name, dtype, shape) }
        var bytes: Int {
            let size = ["F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "U8": 1, "I8": 1, "I32": 4, "I64": 8][dtype] ?? 1
            return shape.reduce(size, *)
        }
    }

    public struct Repo: Sendable {
        public var model: String
        public var config: String
        public var hfQuantConfig: String?
        /// metadata.total_size of the index: the real checkpoint's weight bytes.
        public var totalSize: Int
        public var gated: Bool
        /// The shards' file names and tensors; nil: `shards` synthetic shards of one U8 tensor each (`sim hub-add`).
        public var shards: [(name: String, tensors: [Tensor])]?

        public init(model: String, config: String, hfQuantConfig: String? = nil, totalSize: Int, gated: Bool = false,
                    shards: [(name: String, tensors: [Tensor])]? = nil) {
            self.model = model
            self.config = config
            self.hfQuantConfig = hfQuantConfig
            self.totalSize = totalSize
            self.gated = gated
            self.shards = shards
        }
    }

    /// Nemotron 3 Super's 88 layers: 40 Mamba-2 (M), 40 MoE (E), 8 attention (*), attention at layers 7, 16, 25, 36,
    /// 47, 58, 69, 78. The string as the release's config.json carries it (huggingface.co/nvidia/NVIDIA-Nemotron-3-
    /// Super-120B-A12B-NVFP4, config.json `hybrid_override_pattern`), as public code built against the release quotes
    /// it verbatim (Megatron-style serving scripts for Nemotron 3 Super: `--hybrid-layer-pattern MEMEMEM*EMEMEMEM*…`).
    public static let nemotronPattern = "MEMEMEM*EMEMEMEM*EMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEM*EMEMEMEME"

    static func shardName(_ i: Int, of n: Int, zeroBased: Bool = false) -> String {
        String(format: "model-%05d-of-%05d.safetensors", zeroBased ? i - 1 : i, zeroBased ? n - 1 : n)
    }

    /// Splits tensors over `n` shards in order, every shard getting at least one.
    static func spread(_ tensors: [Tensor], over n: Int, zeroBased: Bool = false) -> [(name: String, tensors: [Tensor])] {
        (1...n).map { i in (shardName(i, of: n, zeroBased: zeroBased), tensors.enumerated().filter { $0.offset % n == i - 1 }.map(\.element)) }
    }

    // MARK: Nemotron 3 Super NVFP4

    /// config.json of nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4: architecture (NemotronHForCausalLM,
    /// nemotron_h), 88 layers of `nemotronPattern`, hidden 4096, 32 query heads and 2 KV heads of 128, Mamba-2
    /// with 128 heads of 64, state 128, 8 groups, conv kernel 4; LatentMoE with 512 routed experts (22 per token),
    /// expert width 2688, shared expert 5376, latent 1024; vocab 131072; one MTP layer (`*E`). Read from the
    /// model card and the configs public projects copy from it (the Megatron-style flags above give the same
    /// figures: --num-experts 512 --moe-router-topk 22 --moe-ffn-hidden-size 2688
    /// --moe-shared-expert-intermediate-size 5376 --mamba-num-heads 128 --mamba-head-dim 64 --mamba-state-dim 128
    /// --mamba-num-groups 8 --moe-latent-size 1024 --num-query-groups 2 --padded-vocab-size 131072).
    /// `quantization_config` is ModelOpt's MIXED_PRECISION (modelopt 0.43): per-layer algorithms (`quantized_layers`:
    /// routed experts NVFP4 with group size 16, some projections FP8), the FP8 KV cache as `kv_cache_scheme`
    /// (type float, 8 bits), as issue #18 read them from the release; the module names in it are the release's kind,
    /// not its full list (hundreds of entries).
    static let nemotronConfig = """
        {"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "num_hidden_layers": 88,
         "hybrid_override_pattern": "\(nemotronPattern)", "mtp_hybrid_override_pattern": "*E", "num_nextn_predict_layers": 1,
         "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 2, "head_dim": 128,
         "mamba_num_heads": 128, "mamba_head_dim": 64, "ssm_state_size": 128, "n_groups": 8, "conv_kernel": 4,
         "n_routed_experts": 512, "num_experts_per_tok": 22, "moe_intermediate_size": 2688,
         "moe_shared_expert_intermediate_size": 5376, "moe_latent_size": 1024, "intermediate_size": 2688,
         "vocab_size": 131072, "max_position_embeddings": 262144, "torch_dtype": "bfloat16",
         "quantization_config": {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION",
           "producer": {"name": "modelopt", "version": "0.43.0"},
           "kv_cache_scheme": {"dynamic": false, "num_bits": 8, "type": "float"},
           "config_groups": {
             "group_0": {"input_activations": {"dynamic": false, "num_bits": 8, "type": "float"},
                         "weights": {"dynamic": false, "num_bits": 8, "type": "float"},
                         "targets": ["backbone.layers.0.mixer.in_proj", "backbone.layers.7.mixer.o_proj"]},
             "group_1": {"input_activations": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16},
                         "weights": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16},
                         "targets": ["backbone.layers.1.mixer.experts.0.up_proj", "backbone.layers.1.mixer.experts.0.down_proj"]}},
           "quantized_layers": {
             "backbone.layers.0.mixer.in_proj": {"quant_algo": "FP8"},
             "backbone.layers.1.mixer.experts.0.up_proj": {"quant_algo": "NVFP4", "group_size": 16},
             "backbone.layers.1.mixer.experts.0.down_proj": {"quant_algo": "NVFP4", "group_size": 16},
             "backbone.layers.7.mixer.o_proj": {"quant_algo": "FP8"}},
           "ignore": ["lm_head", "backbone.layers.7.mixer.q_proj", "backbone.layers.*.mixer.conv1d"]}}
        """

    /// hf_quant_config.json beside it: the same MIXED_PRECISION recipe in ModelOpt's own file, with
    /// `kv_cache_quant_algo: FP8` (the key vLLM reads from this file: modelopt.py `ModelOptQuantConfigBase.from_config`).
    static let nemotronQuant = """
        {"producer": {"name": "modelopt", "version": "0.43.0"},
         "quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": "FP8",
           "quantized_layers": {
             "backbone.layers.0.mixer.in_proj": {"quant_algo": "FP8"},
             "backbone.layers.1.mixer.experts.0.up_proj": {"quant_algo": "NVFP4", "group_size": 16},
             "backbone.layers.1.mixer.experts.0.down_proj": {"quant_algo": "NVFP4", "group_size": 16},
             "backbone.layers.7.mixer.o_proj": {"quant_algo": "FP8"}},
           "exclude_modules": ["lm_head", "backbone.layers.7.mixer.q_proj", "backbone.layers.*.mixer.conv1d"]}}
        """

    /// Tensors of Nemotron-H layers 0 (Mamba), 1 (MoE) and 7 (attention) and the final norm, named and shaped as
    /// NemotronH's weights are (transformers' modeling_nemotron_h: `backbone.layers.N.norm`, `.mixer.A_log`, `D`,
    /// `dt_bias` [mamba heads], `conv1d.weight` [conv dim = 128 × 64 + 2 × 8 × 128, 1, kernel 4], `mixer.norm`
    /// [128 × 64]; MoE `gate.weight` [512, 4096] and `gate.e_score_correction_bias` [512]; ModelOpt's FP8 layers keep
    /// `weight` F8_E4M3 with F32 `weight_scale` and `input_scale`, the FP8 KV cache `k_proj.k_scale`/`v_proj.v_scale`;
    /// NVFP4 layers pack two 4-bit values per U8 with F8_E4M3 `weight_scale` per 16 and F32 `weight_scale_2`).
    static let nemotronTensors: [Tensor] = {
        let conv = 128 * 64 + 2 * 8 * 128
        let l0 = "backbone.layers.0", l1 = "backbone.layers.1", l7 = "backbone.layers.7"
        return [
            Tensor("\(l0).norm.weight", "BF16", [4096]), Tensor("\(l0).mixer.A_log", "BF16", [128]), Tensor("\(l0).mixer.D", "BF16", [128]),
            Tensor("\(l0).mixer.dt_bias", "BF16", [128]), Tensor("\(l0).mixer.conv1d.weight", "BF16", [conv, 1, 4]),
            Tensor("\(l0).mixer.conv1d.bias", "BF16", [conv]), Tensor("\(l0).mixer.norm.weight", "BF16", [128 * 64]),
            Tensor("\(l0).mixer.in_proj.weight_scale", "F32", []), Tensor("\(l0).mixer.in_proj.input_scale", "F32", []),
            Tensor("\(l1).norm.weight", "BF16", [4096]), Tensor("\(l1).mixer.gate.e_score_correction_bias", "F32", [512]),
            Tensor("\(l1).mixer.experts.0.up_proj.weight", "U8", [2688, 1024 / 2]),
            Tensor("\(l1).mixer.experts.0.up_proj.weight_scale", "F8_E4M3", [2688, 1024 / 16]),
            Tensor("\(l1).mixer.experts.0.up_proj.weight_scale_2", "F32", []), Tensor("\(l1).mixer.experts.0.up_proj.input_scale", "F32", []),
            Tensor("\(l7).norm.weight", "BF16", [4096]), Tensor("\(l7).mixer.k_proj.weight", "BF16", [2 * 128, 4096]),
            Tensor("\(l7).mixer.k_proj.k_scale", "F32", []), Tensor("\(l7).mixer.v_proj.v_scale", "F32", []),
            Tensor("backbone.norm_f.weight", "BF16", [4096]),
        ]
    }()

    // MARK: Qwen3 30B-A3B FP8 (Coder and Thinking-2507)

    /// config.json of Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8 and Qwen/Qwen3-30B-A3B-Thinking-2507-FP8 (the same
    /// Qwen3MoeForCausalLM): 48 layers, hidden 2048, 32 query heads and 4 KV heads of 128, 128 experts (8 per token)
    /// of width 768, vocab 151936, 262144 positions; `quantization_config` Qwen's block FP8: quant_method fp8, fmt
    /// e4m3, dynamic activations, 128 × 128 weight blocks (the keys vLLM's Fp8Config.from_config reads:
    /// vllm/model_executor/layers/quantization/fp8.py). Figures from the model cards' "Model Overview" and config.json.
    static let qwen3MoE = """
        {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048,
         "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
         "moe_intermediate_size": 768, "vocab_size": 151936, "max_position_embeddings": 262144, "torch_dtype": "bfloat16",
         "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}}
        """

    /// Layer 0 of a Qwen3-MoE FP8 checkpoint: norms (BF16 [2048], q/k norms [128]), a projection in FP8 with its
    /// per-128×128-block F32 `weight_scale_inv` (k_proj: [4 × 128, 2048] → scales [4, 16]), the router in BF16 and
    /// one expert's down_proj ([2048, 768] → scales [16, 6]); names as in Qwen's FP8 repositories' index.
    static let qwenTensors: [Tensor] = {
        let l = "model.layers.0"
        return [
            Tensor("\(l).input_layernorm.weight", "BF16", [2048]), Tensor("\(l).post_attention_layernorm.weight", "BF16", [2048]),
            Tensor("\(l).self_attn.q_norm.weight", "BF16", [128]), Tensor("\(l).self_attn.k_norm.weight", "BF16", [128]),
            Tensor("\(l).self_attn.k_proj.weight", "F8_E4M3", [512, 2048]), Tensor("\(l).self_attn.k_proj.weight_scale_inv", "F32", [4, 16]),
            Tensor("\(l).mlp.gate.weight", "BF16", [128, 2048]),
            Tensor("\(l).mlp.experts.0.down_proj.weight", "F8_E4M3", [2048, 768]), Tensor("\(l).mlp.experts.0.down_proj.weight_scale_inv", "F32", [16, 6]),
            Tensor("model.norm.weight", "BF16", [2048]),
        ]
    }()

    // MARK: gpt-oss-120b

    /// config.json of openai/gpt-oss-120b at b5c939de8f754692c1647ca79fbf85e8c1e70f8a: 36 layers alternating
    /// `sliding_attention` (window 128) and `full_attention`, hidden 2880, 64 query heads and 8 KV heads of 64, 128
    /// local experts (4 per token), 131072 positions, vocab 201088; `quantization_config` mxfp4 with the modules it
    /// does not convert (attention, router, embeddings, lm_head). The index's total_size 65,248,815,744 bytes over
    /// 15 shards named model-00000-of-00014 … model-00014-of-00014 (as a public write-up of that commit lists them).
    static let gptOSSConfig = """
        {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "num_hidden_layers": 36, "hidden_size": 2880,
         "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64, "sliding_window": 128, "intermediate_size": 2880,
         "layer_types": [\(Array(repeating: "\"sliding_attention\", \"full_attention\"", count: 18).joined(separator: ", "))],
         "num_local_experts": 128, "num_experts_per_tok": 4, "vocab_size": 201088, "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
         "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}}
        """

    /// Per layer the input norm [2880] and the attention sinks [64 heads]; layer 0's k_proj [8 × 64, 2880] and its
    /// bias, the router [128, 2880] and bias, the experts' BF16 biases ([128, 2 × 2880] and [128, 2880]); the final
    /// norm. Names as transformers' GptOss checkpoint layout (`mlp.experts.gate_up_proj_blocks` etc. are the MXFP4
    /// tensors, left out: they are gigabytes).
    static let gptOSSTensors: [Tensor] = {
        var t = (0..<36).flatMap { i in [Tensor("model.layers.\(i).input_layernorm.weight", "BF16", [2880]), Tensor("model.layers.\(i).self_attn.sinks", "BF16", [64])] }
        t += [Tensor("model.layers.0.self_attn.k_proj.weight", "BF16", [512, 2880]), Tensor("model.layers.0.self_attn.k_proj.bias", "BF16", [512]),
              Tensor("model.layers.0.mlp.router.weight", "BF16", [128, 2880]), Tensor("model.layers.0.mlp.router.bias", "BF16", [128]),
              Tensor("model.layers.0.mlp.experts.gate_up_proj_bias", "BF16", [128, 5760]), Tensor("model.layers.0.mlp.experts.down_proj_bias", "BF16", [128, 2880]),
              Tensor("model.norm.weight", "BF16", [2880])]
        return t
    }()

    public static let repos: [Repo] = [
        // 74.5 GB: the published checkpoint's size as the first sim hub carried it (not re-read: the hub is out of reach).
        Repo(model: "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4", config: nemotronConfig, hfQuantConfig: nemotronQuant,
             totalSize: 74_500_000_000, shards: spread(nemotronTensors, over: 3)),
        // 31.5 GB each, likewise.
        Repo(model: "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", config: qwen3MoE, totalSize: 31_500_000_000, shards: spread(qwenTensors, over: 3)),
        Repo(model: "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8", config: qwen3MoE, totalSize: 31_500_000_000, shards: spread(qwenTensors, over: 3)),
        Repo(model: "openai/gpt-oss-120b", config: gptOSSConfig, totalSize: 65_248_815_744, shards: spread(gptOSSTensors, over: 15, zeroBased: true)),
        // Small ones for tests: one per detection path, and a gated one.
        Repo(model: "sim-org/tiny-compressed", config: """
            {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
             "num_key_value_heads": 2, "torch_dtype": "bfloat16", "max_position_embeddings": 8192,
             "compression_config": {"format": "float-quantized", "kv_cache_scheme": {"type": "float", "num_bits": 8}}}
            """, totalSize: 6_000_000),
        Repo(model: "sim-org/tiny-fp8-modelopt", config: tinyConfig, hfQuantConfig: #"{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": null}}"#,
             totalSize: 6_000_000),
        Repo(model: "sim-org/tiny-gated", config: tinyConfig, totalSize: 6_000_000, gated: true),
    ]

    /// A small dense Llama-like architecture for checkpoints that only need to exist.
    public static let tinyConfig = """
        {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
         "num_key_value_heads": 2, "torch_dtype": "bfloat16", "max_position_embeddings": 8192}
        """

    /// A safetensors file: 8-byte little-endian header length, the JSON header (padded with spaces to a multiple of
    /// 8, as the format allows), then each tensor's bytes in order (a pattern from `seed`, so files differ).
    public static func safetensors(_ tensors: [Tensor], seed: String) -> Data {
        var offset = 0
        var entries = [#""__metadata__":{"format":"pt"}"#]
        for t in tensors {
            entries.append(#""\#(t.name)":{"dtype":"\#(t.dtype)","shape":[\#(t.shape.map(String.init).joined(separator: ","))],"data_offsets":[\#(offset),\#(offset + t.bytes)]}"#)
            offset += t.bytes
        }
        var header = "{" + entries.joined(separator: ",") + "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var d = Data()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { d.append(contentsOf: $0) }
        d.append(Data(header.utf8))
        let block = Data(sha256Hex(seed).utf8)
        var body = Data(capacity: offset)
        while body.count < offset { body.append(block.prefix(offset - body.count)) }
        d.append(body)
        return d
    }

    /// One U8 tensor of `bytes` bytes (the synthetic shards of `sim hub-add`).
    public static func safetensors(tensor: String, bytes: Int, seed: String) -> Data {
        safetensors([Tensor(tensor, "U8", [bytes])], seed: seed)
    }

    /// Writes a repository under `hub`: its files, then `.sim-repo.json` with the commit (a hash of the contents),
    /// whether it is gated, and each file's size and blob ids. `shards`/`shardBytes` apply to a repository without
    /// shards of its own.
    public static func write(_ repo: Repo, to hub: String, shards: Int = 3, shardBytes: Int) throws {
        let dir = "\(hub)/\(repo.model)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var files: [String: Data] = [
            "config.json": Data(repo.config.utf8),
            "tokenizer.json": Data(#"{"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}"#.utf8),
            "tokenizer_config.json": Data(#"{"model_max_length": 262144, "chat_template": "{{ messages }}"}"#.utf8),
            "generation_config.json": Data(#"{"temperature": 0.6, "top_p": 0.95}"#.utf8),
        ]
        if let q = repo.hfQuantConfig { files["hf_quant_config.json"] = Data(q.utf8) }
        var weightMap: [String: String] = [:]
        let layout = repo.shards ?? (1...shards).map { i in (shardName(i, of: shards), [Tensor("model.layers.\(i - 1).weight", "U8", [shardBytes])]) }
        for (name, tensors) in layout {
            for t in tensors { weightMap[t.name] = name }
            files[name] = safetensors(tensors, seed: repo.model + name)
        }
        let index: [String: Any] = ["metadata": ["total_size": repo.totalSize], "weight_map": weightMap]
        files["model.safetensors.index.json"] = try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys, .prettyPrinted])
        // Files of an earlier layout (another shard count) go first.
        for old in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where !old.hasPrefix(".") && files[old] == nil { try? fm.removeItem(atPath: "\(dir)/\(old)") }
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: "\(dir)/\(name)")) }
        try writeMeta(dir, gated: repo.gated)
    }

    /// The tiny agent model scripts/make-tiny-agent trains (the real engine's checkpoint in the simulation).
    public static let tinyAgent = "sous-sim/tiny-agent"
    public static var tinyAgentDir: String { ProcessInfo.processInfo.environment["SOUS_TINY_AGENT"] ?? "/var/cache/sous/models/tiny-agent" }

    /// Publishes a real checkpoint directory (its files, not its dot files) as `model`.
    public static func publish(directory source: String, as model: String, to hub: String) throws {
        let dir = "\(hub)/\(model)", fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: source) where !name.hasPrefix(".") {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: "\(source)/\(name)", isDirectory: &isDir), !isDir.boolValue else { continue }
            try fm.copyItem(atPath: "\(source)/\(name)", toPath: "\(dir)/\(name)")
        }
        try writeMeta(dir, gated: false)
    }

    /// `.sim-repo.json` for the files of `dir`: the commit (a hash of the contents), whether the repository is gated,
    /// each file's size and blob ids.
    static func writeMeta(_ dir: String, gated: Bool) throws {
        let fm = FileManager.default
        let names = try fm.contentsOfDirectory(atPath: dir).filter { !$0.hasPrefix(".") }.sorted()
        let ids = try blobIDs(dir, names)
        let revision = String(sha256Hex(names.map { "\($0):\(ids[$0]!.oid)" }.joined()).prefix(40))
        let meta: [String: Any] = ["revision": revision, "gated": gated, "files": try names.map { name -> [String: Any] in
            let size = (try fm.attributesOfItem(atPath: "\(dir)/\(name)")[.size] as? Int) ?? 0
            var f: [String: Any] = ["name": name, "size": size, "oid": ids[name]!.oid]
            if let lfs = ids[name]!.lfs { f["sha256"] = lfs.sha256; f["pointer_size"] = lfs.pointerSize }
            return f
        }]
        try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys]).write(to: URL(fileURLWithPath: "\(dir)/.sim-repo.json"))
    }

    /// The ids the hub gives each file: the git blob sha1 ("blob SIZE\0" + content); for LFS-tracked files (the
    /// safetensors shards) the git blob is the LFS pointer text, and the content's sha256 is the LFS oid that
    /// names the blob in a client's cache (file_download.py: the cache's blob is named by X-Linked-Etag or ETag).
    static func blobIDs(_ dir: String, _ names: [String]) throws -> [String: (oid: String, lfs: (sha256: String, pointerSize: Int)?)] {
        var script = "cd \(try ShellQuote.quote(dir))\n"
        for n in names {
            let q = try ShellQuote.quote(n)
            if n.hasSuffix(".safetensors") {
                script += "s=$(sha256sum < \(q) | cut -c1-64); p=$(printf 'version https://git-lfs.github.com/spec/v1\\noid sha256:%s\\nsize %s\\n' \"$s\" \"$(stat -c %s \(q))\")\n"
                script += "printf '%s %s %s %s\\n' \(q) \"$(printf '%s\\n' \"$p\" | { printf 'blob %s\\0' \"$(printf '%s\\n' \"$p\" | wc -c)\"; cat; } | sha1sum | cut -c1-40)\" \"$s\" \"$(printf '%s\\n' \"$p\" | wc -c)\"\n"
            } else {
                script += "printf '%s %s\\n' \(q) \"$( { printf 'blob %s\\0' \"$(stat -c %s \(q))\"; cat \(q); } | sha1sum | cut -c1-40)\"\n"
            }
        }
        var out: [String: (oid: String, lfs: (sha256: String, pointerSize: Int)?)] = [:]
        for line in try Local.sh(script).output.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            if f.count == 4 { out[f[0]] = (f[1], (f[2], Int(f[3]) ?? 0)) } else if f.count == 2 { out[f[0]] = (f[1], nil) }
        }
        guard Set(out.keys) == Set(names) else { throw UsageError("hashing the simulated hub's files in \(dir) failed") }
        return out
    }
}
