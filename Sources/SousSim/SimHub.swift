import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// A local stand-in for the Hugging Face hub: one directory per repository (`<hub>/ORG/NAME/`) holding small
/// fake checkpoints in the real file formats — config.json, a tokenizer, a safetensors index and shards whose
/// headers are real safetensors headers — and `.sim-repo.json` (revision, gated).
///
/// The configs of the shipped recipes' models carry their architecture figures (layers, heads, KV heads, head
/// dim, Mamba sizes, quantization) and an index whose metadata.total_size is the real checkpoint's size, so
/// `sous fit` gives the verdict it would give on a Spark. The figures are written from the model cards as
/// known when this was made (not read from the hub, which CI cannot reach); check them against the hub.
public enum SimHub {
    public struct Repo: Sendable {
        public var model: String
        public var config: String
        public var hfQuantConfig: String?
        /// metadata.total_size of the index: the real checkpoint's weight bytes.
        public var totalSize: Int
        public var gated: Bool

        public init(model: String, config: String, hfQuantConfig: String? = nil, totalSize: Int, gated: Bool = false) {
            self.model = model
            self.config = config
            self.hfQuantConfig = hfQuantConfig
            self.totalSize = totalSize
            self.gated = gated
        }
    }

    static let nemotronPattern: String = {
        // 88 layers: Mamba-2 (M) and MoE (E) pairs, with an attention layer (*) in place of Mamba in 8 of them.
        var p = ""
        for i in 0..<44 { p += (i % 11 == 2 || i % 11 == 8) ? "*E" : "ME" }
        return p
    }()

    public static let repos: [Repo] = [
        Repo(model: "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4", config: """
            {"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "num_hidden_layers": 88,
             "hybrid_override_pattern": "\(nemotronPattern)", "hidden_size": 4096, "num_attention_heads": 32,
             "num_key_value_heads": 2, "head_dim": 128, "mamba_num_heads": 128, "mamba_head_dim": 64, "ssm_state_size": 128,
             "n_groups": 8, "conv_kernel": 4, "n_routed_experts": 512, "num_experts_per_tok": 22,
             "max_position_embeddings": 262144, "torch_dtype": "bfloat16"}
            """, hfQuantConfig: """
            {"producer": {"name": "modelopt", "version": "0.39.0"},
             "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8", "group_size": 16, "exclude_modules": ["lm_head"]}}
            """, totalSize: 74_500_000_000),
        Repo(model: "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", config: qwen3MoE, totalSize: 31_500_000_000),
        Repo(model: "Qwen/Qwen3-30B-A3B-Thinking-2507-FP8", config: qwen3MoE, totalSize: 31_500_000_000),
        Repo(model: "openai/gpt-oss-120b", config: """
            {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "num_hidden_layers": 36, "hidden_size": 2880,
             "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64, "sliding_window": 128,
             "layer_types": [\(Array(repeating: "\"sliding_attention\", \"full_attention\"", count: 18).joined(separator: ", "))],
             "num_local_experts": 128, "num_experts_per_tok": 4, "max_position_embeddings": 131072, "torch_dtype": "bfloat16",
             "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.embed_tokens", "lm_head"]}}
            """, totalSize: 65_200_000_000),
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

    static let qwen3MoE = """
        {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048,
         "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
         "max_position_embeddings": 262144, "torch_dtype": "bfloat16",
         "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}}
        """

    /// A safetensors file holding one U8 tensor of `bytes` bytes: 8-byte little-endian header length, the JSON
    /// header (padded with spaces to a multiple of 8, as the format allows), then the data.
    public static func safetensors(tensor: String, bytes: Int, seed: String) -> Data {
        var header = #"{"__metadata__":{"format":"pt"},"\#(tensor)":{"dtype":"U8","shape":[\#(bytes)],"data_offsets":[0,\#(bytes)]}}"#
        while header.utf8.count % 8 != 0 { header += " " }
        var d = Data()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { d.append(contentsOf: $0) }
        d.append(Data(header.utf8))
        let block = Data(sha256Hex(seed).utf8)
        var body = Data(capacity: bytes)
        while body.count < bytes { body.append(block.prefix(bytes - body.count)) }
        d.append(body)
        return d
    }

    /// Writes every repository (or the named one) under `hub`, `shards` shards of `shardBytes` each.
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
        for i in 1...shards {
            let name = String(format: "model-%05d-of-%05d.safetensors", i, shards)
            let tensor = "model.layers.\(i - 1).weight"
            weightMap[tensor] = name
            files[name] = safetensors(tensor: tensor, bytes: shardBytes, seed: repo.model + name)
        }
        let index: [String: Any] = ["metadata": ["total_size": repo.totalSize], "weight_map": weightMap]
        files["model.safetensors.index.json"] = try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys, .prettyPrinted])
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: "\(dir)/\(name)")) }
        let revision = String(sha256Hex(files.keys.sorted().map { "\($0):\(files[$0]!.count):\(files[$0]!.prefix(4096).base64EncodedString())" }.joined()).prefix(40))
        let meta: [String: Any] = ["revision": revision, "gated": repo.gated]
        try JSONSerialization.data(withJSONObject: meta).write(to: URL(fileURLWithPath: "\(dir)/.sim-repo.json"))
    }
}

/// The modelled Hugging Face CLI (`hf download`, and the older `huggingface-cli download`) on a simulated
/// node: reads the stand-in hub named in the node's config, writes the real cache layout (blobs named by their
/// etag — content sha256 for weights, git blob sha1 otherwise — written as `.incomplete` and renamed, snapshot
/// links, refs/main), resumes a partial blob,
/// and moves bytes at the node's simulated bandwidth. Error texts are the real CLI's.
public enum SimHF {
    static func fail(_ message: String, _ code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }

    public static func main(_ argv: [String], env: [String: String] = ProcessInfo.processInfo.environment) -> Never {
        var args = argv
        guard args.first == "download" else { fail("usage: hf download REPO_ID [FILENAMES...] [--revision R] [--include P...] [--cache-dir D] [--token T]", 2) }
        args.removeFirst()
        var positional: [String] = [], include: [String] = [], exclude: [String] = []
        var revision = "main", cacheDir: String?, token: String?
        var i = 0
        var current: String?
        while i < args.count {
            let a = args[i]
            switch a {
            case "--revision": i += 1; revision = i < args.count ? args[i] : revision; current = nil
            case "--cache-dir": i += 1; cacheDir = i < args.count ? args[i] : nil; current = nil
            case "--token": i += 1; token = i < args.count ? args[i] : nil; current = nil
            case "--include": current = "include"
            case "--exclude": current = "exclude"
            case "--quiet": current = nil
            case "--max-workers", "--local-dir", "--repo-type": i += 1; current = nil
            default:
                if a.hasPrefix("--") { fail("hf: error: unrecognized arguments: \(a)", 2) }
                switch current {
                case "include": include.append(a)
                case "exclude": exclude.append(a)
                default: positional.append(a)
                }
            }
            i += 1
        }
        guard let repoID = positional.first else { fail("hf download: error: the following arguments are required: repo_id", 2) }
        let filenames = Array(positional.dropFirst())
        guard let hub = SimPaths.string("hub") else { fail("simulated hub not configured") }
        let src = "\(hub)/\(repoID)"
        guard let metaData = FileManager.default.contents(atPath: src + "/.sim-repo.json"),
              let meta = try? JSONSerialization.jsonObject(with: metaData) as? [String: Any], let commit = meta["revision"] as? String else {
            fail("huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. (Request ID: Root=sim)\n\nRepository Not Found for url: https://huggingface.co/api/models/\(repoID)/revision/\(revision).\nPlease make sure you specified the correct `repo_id` and `repo_type`.\nIf you are trying to access a private or gated repo, make sure you are authenticated.")
        }
        guard revision == "main" || revision == commit else {
            fail("huggingface_hub.errors.RevisionNotFoundError: 404 Client Error. (Request ID: Root=sim)\n\nRevision Not Found for url: https://huggingface.co/api/models/\(repoID)/revision/\(revision).\nInvalid rev id: \(revision)")
        }
        let presented = token ?? env["HF_TOKEN"] ?? env["HF_TOKEN_PATH"].flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?.trimmingCharacters(in: .whitespacesAndNewlines)
        if meta["gated"] as? Bool == true {
            let valid = ((try? String(contentsOfFile: hub + "/.tokens", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            guard let presented, !presented.isEmpty else {
                fail("huggingface_hub.errors.GatedRepoError: 401 Client Error. (Request ID: Root=sim)\n\nCannot access gated repo for url https://huggingface.co/api/models/\(repoID)/revision/main.\nAccess to model \(repoID) is restricted. You must have access to it and be authenticated to access it. Please log in.")
            }
            guard valid.contains(presented) else {
                fail("huggingface_hub.errors.HfHubHTTPError: 401 Client Error: Unauthorized for url: https://huggingface.co/api/models/\(repoID)/revision/main (Request ID: Root=sim)\n\nInvalid credentials in Authorization header")
            }
        }
        let cache = cacheDir ?? env["HF_HUB_CACHE"] ?? ((env["HF_HOME"] ?? ((env["HOME"] ?? "/root") + "/.cache/huggingface")) + "/hub")
        let repoDir = "\(cache)/models--\(repoID.replacingOccurrences(of: "/", with: "--"))"
        let snapshot = "\(repoDir)/snapshots/\(commit)"
        let fm = FileManager.default
        do {
            for d in ["blobs", "refs", "snapshots/\(commit)"] { try fm.createDirectory(atPath: "\(repoDir)/\(d)", withIntermediateDirectories: true) }
            if revision == "main" { try commit.write(toFile: "\(repoDir)/refs/main", atomically: true, encoding: .utf8) }
            let all = try fm.contentsOfDirectory(atPath: src).filter { !$0.hasPrefix(".") }.sorted()
            let wanted = all.filter { name in
                (filenames.isEmpty || filenames.contains(name))
                    && (include.isEmpty || include.contains { fnmatch($0, name, 0) == 0 })
                    && !exclude.contains { fnmatch($0, name, 0) == 0 }
            }
            let rate = SimPaths.setting("download_bytes_per_second", default: 400_000_000)
            for name in wanted {
                let link = "\(snapshot)/\(name)"
                if (try? fm.destinationOfSymbolicLink(atPath: link)) != nil, fm.fileExists(atPath: link) { continue }
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(src)/\(name)"))
                let blob = "\(repoDir)/blobs/\(try etag(of: "\(src)/\(name)"))"
                if !fm.fileExists(atPath: blob) {
                    try copyThrottled(data, to: blob + ".incomplete", rate: rate)
                    guard rename(blob + ".incomplete", blob) == 0 else { throw CocoaError(.fileWriteUnknown) }
                }
                try? fm.removeItem(atPath: link)
                try fm.createSymbolicLink(atPath: link, withDestinationPath: "../../blobs/\((blob as NSString).lastPathComponent)")
            }
            // What the hub served to this node, for tests ("downloaded once").
            let log = SimPaths.root + "/downloads.log"
            if !fm.fileExists(atPath: log) { _ = fm.createFile(atPath: log, contents: nil) }
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            try h.seekToEnd()
            try h.write(contentsOf: Data("\(repoID) \(wanted.count) files\n".utf8))
            try h.close()
        } catch {
            fail("OSError: \(error)")
        }
        print(snapshot)
        exit(0)
    }

    /// The name the hub gives a file's blob: the sha256 of its content for LFS files (weights), the git blob sha1
    /// (of "blob SIZE\0" + content) for the others.
    static func etag(of path: String) throws -> String {
        let q = try ShellQuote.quote(path)
        let script = path.hasSuffix(".safetensors") ? "sha256sum < \(q) | cut -c1-64"
            : "{ printf 'blob %s\\0' \"$(stat -c %s \(q))\"; cat \(q); } | sha1sum | cut -c1-40"
        return try Local.sh(script).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Appends to a partial file from where it stops (a resumed download), at `rate` bytes per second.
    static func copyThrottled(_ data: Data, to path: String, rate: Double) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? h.close() }
        var offset = Int(try h.seekToEnd())
        if offset > data.count { try h.truncate(atOffset: 0); offset = 0 }
        let chunk = 1 << 20
        while offset < data.count {
            let end = min(offset + chunk, data.count)
            try h.write(contentsOf: data[offset..<end])
            Thread.sleep(forTimeInterval: Double(end - offset) / rate)
            offset = end
        }
    }
}
