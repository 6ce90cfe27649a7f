import Foundation

/// Where a model lives in a Hugging Face cache: `<hf_cache>/hub/models--ORG--NAME/{blobs,refs,snapshots/<commit>}`.
public struct HFRepo: Sendable {
    public var model: String
    /// The recipe's revision (a commit or a branch); nil means `main`.
    public var revision: String?
    /// The inventory's hf_cache on the node (HF_HOME).
    public var cache: String

    public init(model: String, revision: String?, cache: String) {
        self.model = model
        self.revision = revision
        self.cache = cache
    }

    public init(_ d: Deployment, node: NodeSpec) {
        self.init(model: d.recipe.model, revision: d.recipe.revision, cache: d.inventory.hfCache(on: node))
    }

    public var hub: String { cache + "/hub" }
    public var dirName: String { "models--" + model.replacingOccurrences(of: "/", with: "--") }
    public var dir: String { hub + "/" + dirName }
}

/// What one node holds of a checkpoint, read by one remote script (no sudo, read-only).
public struct CheckpointStatus: Sendable, Encodable {
    public enum State: String, Sendable, Encodable { case present, missing, incomplete }
    public var state: State
    /// The commit the snapshot is at (refs/main or the recipe's revision, resolved).
    public var revision: String?
    /// Bytes of every file in the snapshot (through the symlinks into blobs/).
    public var bytes: Int
    /// Every file of the snapshot and its size.
    public var files: [String: Int]
    public var problems: [String]
    /// Files proven broken (truncated, unreadable header, content that does not match its hash): to be removed
    /// before fetching again.
    public var broken: [String] = []
    /// Every file was hashed and matched its blob's name (`--verify`).
    public var verified = false
    public var quantization: Quantization?
    /// Total memory of the node in bytes (/proc/meminfo MemTotal: unified memory on a GB10).
    public var memTotal: Int
    var configJSON: String?
    var indexJSON: String?

    enum CodingKeys: String, CodingKey { case state, revision, bytes, files, problems, quantization, verified }

    /// What the checkpoint declares about its own quantization, and where.
    public struct Quantization: Sendable, Encodable, Equatable {
        /// The method vLLM will pick (its --quantization name).
        public var method: String
        /// Where it was read: `config.json quantization_config`, `config.json compression_config`, `hf_quant_config.json`.
        public var source: String
        /// The checkpoint's KV-cache quantization (`FP8`), when it declares one.
        public var kvCache: String?
        /// ModelOpt's quant_algo, for ModelOpt checkpoints.
        public var algorithm: String?
        /// Why vLLM will not load it, when sous can tell.
        public var problem: String?

        public init(method: String, source: String, kvCache: String?, algorithm: String? = nil, problem: String? = nil) {
            (self.method, self.source, self.kvCache, self.algorithm, self.problem) = (method, source, kvCache, algorithm, problem)
        }
    }

    /// The memory-budget input for `sous fit`, when config.json and the safetensors index are there.
    public var fit: FitInput? {
        guard let c = configJSON, let i = indexJSON else { return nil }
        return try? FitInput(configJSON: c, indexJSON: i, totalMemory: memTotal)
    }
}

public enum Checkpoint {
    /// Any one of these is a tokenizer vLLM can load.
    static let tokenizerFiles = ["tokenizer.json", "tokenizer.model", "tekken.json", "vocab.json"]

    /// Resolves the revision (a branch through refs/), lists the snapshot's files with their sizes (a symlink whose
    /// blob is missing shows as N), reads each safetensors header's length and its last data offset (so a
    /// truncated shard is found without hashing it), then config.json, the index and hf_quant_config.json.
    ///
    /// With `verify`, every file is also hashed and compared with its blob's name, as the hub names blobs: the
    /// sha256 of the content for LFS files (weights), the git blob sha1 for the others. This reads every byte.
    public static func statusScript(_ repo: HFRepo, verify: Bool = false) throws -> String {
        let dir = try ShellQuote.quote(repo.dir)
        let rev = try ShellQuote.quote(repo.revision ?? "main")
        let hashes = !verify ? "" : #"""
          find -L . -mindepth 1 -type f -printf '%P\n' | while IFS= read -r f; do
            b=$(readlink -f "$f"); n=${b##*/}
            case ${#n} in
              64) h=$(sha256sum < "$b" | cut -c1-64) ;;
              40) h=$( { printf 'blob %s\0' "$(stat -c %s "$b")"; cat "$b"; } | sha1sum | cut -c1-40) ;;
              *) echo "X - $f"; continue ;;
            esac
            [ "$h" = "$n" ] && echo "X ok $f" || echo "X bad $f"
          done

        """#
        return """
        awk '/^MemTotal/ {print "M", $2}' /proc/meminfo
        repo=\(dir); rev=\(rev)
        [ -f "$repo/refs/$rev" ] && rev=$(cat "$repo/refs/$rev")
        d="$repo/snapshots/$rev"
        if [ -n "$rev" ] && [ -d "$d" ] && cd "$d"; then
          echo "R $rev"
          find -L . -mindepth 1 ! -type d -printf 'F %Y %s %P\\n'
          find -L . -name '*.safetensors' -type f -printf '%P\\n' | while IFS= read -r f; do
            n=$(od -An -tu8 -N8 "$f" 2>/dev/null | tr -d ' ')
            e=$(tail -c +9 "$f" 2>/dev/null | head -c "${n:-0}" | grep -aoE '"data_offsets" *: *\\[ *[0-9]+ *, *[0-9]+ *\\]' | grep -oE '[0-9]+ *\\]$' | tr -d ' ]' | sort -n | tail -1)
            echo "H ${n:-x} ${e:-x} $f"
          done
        \(hashes)          printf '\\036\\n'; cat config.json 2>/dev/null; printf '\\n\\036\\n'; cat model.safetensors.index.json 2>/dev/null
          printf '\\n\\036\\n'; cat hf_quant_config.json 2>/dev/null
        fi
        true
        """
    }

    /// Reads one node's checkpoint status over its session.
    public static func read(_ s: NodeSession, repo: HFRepo, verify: Bool = false) async throws -> CheckpointStatus {
        let r = try await s.run(.shell(try statusScript(repo, verify: verify), timeout: verify ? .seconds(3 * 3600) : .seconds(120)))
        guard r.ok else { throw StepFailure(step: "model", node: s.node.name, cause: "reading the HF cache failed: \(r.tail())", hint: nil, exitCode: .checkFailed) }
        return parse(r.stdoutText, repo: repo)
    }

    /// A checkpoint directory on this machine (a snapshot, or a copy of its config.json, index and
    /// hf_quant_config.json), for `fit`, `render` and `plan` without a node. Sizes are not checked.
    public static func local(_ dir: String, memTotal: Int) throws -> CheckpointStatus {
        func read(_ name: String) -> String? { try? String(contentsOfFile: dir + "/" + name, encoding: .utf8) }
        guard let config = read("config.json") else { throw UsageError("\(dir)/config.json cannot be read", hint: "--checkpoint takes a directory with the checkpoint's config.json") }
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).reduce(into: [String: Int]()) { out, name in
            out[name] = ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + name))?[.size] as? Int) ?? 0
        }
        let index = read("model.safetensors.index.json")
        let problems = metadataProblem(config: config, index: index).map { [$0] } ?? []
        return CheckpointStatus(state: problems.isEmpty ? .present : .incomplete, revision: nil, bytes: Checked.sum(files.values) ?? Int.max,
                                files: files, problems: problems,
                                quantization: detectQuantization(configJSON: config, hfQuantConfigJSON: read("hf_quant_config.json")),
                                memTotal: memTotal, configJSON: config, indexJSON: index)
    }

    /// What makes config.json or the index unusable for `fit`: a size no model has (`FitInput.Implausible`).
    static func metadataProblem(config: String?, index: String?) -> String? {
        guard let config, let index else { return nil }
        do { _ = try FitInput(configJSON: config, indexJSON: index, totalMemory: 0) } catch let e as FitInput.Implausible { return e.message } catch {}
        return nil
    }

    /// Reads the status script's output.
    public static func parse(_ output: String, repo: HFRepo) -> CheckpointStatus {
        let sections = output.components(separatedBy: "\u{1e}\n")
        var memKB = 0, revision: String?, files: [String: Int] = [:], broken: Set<String> = []
        var headers: [String: (length: Int, end: Int)?] = [:]
        var corrupt: [String] = [], verified = false
        for line in sections[0].split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
            switch f.first {
            case "M": memKB = Int(f.count > 1 ? f[1] : "").flatMap { (0...(Int.max / 1024)).contains($0) ? $0 : nil } ?? 0
            case "R": revision = f.count > 1 ? f[1] : nil
            case "F" where f.count == 4:
                files[f[3]] = Int(f[2]).map { max(0, $0) } ?? 0
                if f[1] == "N" { broken.insert(f[3]) }
            case "H" where f.count == 4:
                headers[f[3]] = Int(f[1]).flatMap { n in Int(f[2]).map { (n, $0) } }
            case "X" where f.count >= 3:
                // "X ok|bad|- PATH": the path may hold spaces, which the split into four fields cut.
                if f[1] == "bad" { corrupt.append(f[2...].joined(separator: " ")) }
                if f[1] != "-" { verified = true }
            default: break
            }
        }
        func blob(_ i: Int) -> String? {
            guard sections.count > i else { return nil }
            let t = sections[i].trimmingCharacters(in: .whitespacesAndNewlines)
            return t.isEmpty ? nil : t
        }
        let config = blob(1), index = blob(2), hfQuant = blob(3)
        var status = CheckpointStatus(state: .present, revision: revision, bytes: 0, files: files, problems: [],
                                      quantization: detectQuantization(configJSON: config, hfQuantConfigJSON: hfQuant),
                                      memTotal: memKB * 1024, configJSON: config, indexJSON: index)
        guard revision != nil else {
            status.state = .missing
            status.problems = ["no snapshot for \(repo.revision.map { "revision \($0)" } ?? "refs/main") in \(repo.dir)"]
            return status
        }
        var problems: [String] = []
        if let bytes = Checked.sum(files.filter { !broken.contains($0.key) }.values) { status.bytes = bytes } else {
            status.bytes = Int.max
            problems.append("the snapshot's file sizes add up past \(Int.max) bytes (implausible)")
        }
        if files["config.json"] == nil || broken.contains("config.json") { problems.append("config.json is missing") }
        if !tokenizerFiles.contains(where: { files[$0] != nil && !broken.contains($0) }) {
            problems.append("no tokenizer (one of \(tokenizerFiles.joined(separator: ", ")))")
        }
        var shards: [String] = []
        if files["model.safetensors.index.json"] != nil {
            if let map = index.flatMap({ try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })?["weight_map"] as? [String: String] {
                shards = Set(map.values).sorted()
            } else {
                problems.append("model.safetensors.index.json has no weight_map")
            }
        } else if files["model.safetensors"] != nil {
            shards = ["model.safetensors"]
        } else {
            problems.append("no weights (model.safetensors.index.json or model.safetensors)")
        }
        for shard in shards {
            guard let size = files[shard], !broken.contains(shard) else { problems.append("\(shard) is missing"); continue }
            guard let h = headers[shard], let header = h else {
                problems.append("\(shard) has no readable safetensors header (\(size) bytes)")
                status.broken.append(shard)
                continue
            }
            guard header.length >= 0, header.end >= 0, let want = Checked.sum([8, header.length, header.end]) else {
                problems.append("\(shard) has an implausible safetensors header (header length \(header.length), data end \(header.end))")
                status.broken.append(shard)
                continue
            }
            if size != want {
                problems.append("\(shard) is \(size) bytes, its header says \(want) (truncated or still downloading)")
                status.broken.append(shard)
            }
        }
        if let problem = metadataProblem(config: config, index: index) { problems.append(problem) }
        for f in corrupt.sorted() where !status.broken.contains(f) {
            problems.append("\(f): its content does not match its hash (corrupt)")
            status.broken.append(f)
        }
        status.verified = verified && corrupt.isEmpty
        status.problems = problems
        if !problems.isEmpty { status.state = .incomplete }
        return status
    }

    /// vLLM's method name for each ModelOpt `quant_algo` it loads (vllm/model_executor/layers/quantization/
    /// modelopt.py `QUANT_ALGOS`): the configs' `override_quantization_method` claim NVFP4 and W4A16_NVFP4 for
    /// `modelopt_fp4` ("NVFP4" in algo), MXFP8 for `modelopt_mxfp8`, MIXED_PRECISION for `modelopt_mixed`, FP8 for
    /// `modelopt`; FP8_PER_CHANNEL_PER_TOKEN and FP8_PB_WO stay with the checkpoint's `modelopt`, whose
    /// ModelOptFp8Config serves them. Another algo is refused by vLLM at load ("ModelOpt currently only supports …").
    public static let modeloptMethods = ["FP8": "modelopt", "FP8_PER_CHANNEL_PER_TOKEN": "modelopt", "FP8_PB_WO": "modelopt",
                                         "NVFP4": "modelopt_fp4", "W4A16_NVFP4": "modelopt_fp4", "MXFP8": "modelopt_mxfp8",
                                         "MIXED_PRECISION": "modelopt_mixed"]

    /// The method vLLM detects, in vLLM's order: config.json `quantization_config`; else hf_quant_config.json,
    /// which vLLM attaches as the quantization config when config.json has none (vllm/transformers_utils/config.py
    /// `get_config`: "ModelOpt 0.29.0 and before saves the quantization config in a separate hf_quant_config.json");
    /// else config.json `compression_config` (vllm/config/model.py `_parse_quant_hf_config`). ModelOpt's
    /// `modelopt` is refined by its quant_algo (`modeloptMethods`). The KV cache: ModelOpt's `kv_cache_quant_algo`
    /// (hf_quant_config.json) or `kv_cache_scheme` {type float, 8 bits} → FP8 (config.json; modelopt.py
    /// `ModelOptQuantConfigBase.from_config` reads these two, in that format), the same scheme for compressed-tensors.
    public static func detectQuantization(configJSON: String?, hfQuantConfigJSON: String?) -> CheckpointStatus.Quantization? {
        func object(_ s: String?) -> [String: Any]? { s.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } }
        func scheme(_ q: [String: Any]) -> String? {
            (q["kv_cache_scheme"] as? [String: Any]).map { s in (s["type"] as? String == "float" && s["num_bits"] as? Int == 8) ? "FP8" : "quantized" }
        }
        func modelopt(_ q: [String: Any], source: String) -> CheckpointStatus.Quantization? {
            let inner = q["quantization"] as? [String: Any] ?? q
            guard let algo = (inner["quant_algo"] as? String)?.uppercased() else { return nil }
            let kv = (inner["kv_cache_quant_algo"] as? String)?.uppercased() ?? scheme(inner)
            guard let method = modeloptMethods[algo] else {
                return .init(method: "modelopt", source: source, kvCache: kv, algorithm: algo,
                             problem: "ModelOpt quant_algo \(algo) is not one vLLM loads (\(modeloptMethods.keys.sorted().joined(separator: ", ")))")
            }
            return .init(method: method, source: source, kvCache: kv, algorithm: algo)
        }
        let c = object(configJSON)
        if let q = c?["quantization_config"] as? [String: Any], let method = (q["quant_method"] as? String)?.lowercased() {
            if method.hasPrefix("modelopt"), let m = modelopt(q, source: "config.json quantization_config") { return m }
            return .init(method: method == "compressed_tensors" ? "compressed-tensors" : method, source: "config.json quantization_config", kvCache: scheme(q))
        }
        if let h = object(hfQuantConfigJSON), let m = modelopt(h, source: "hf_quant_config.json") { return m }
        if let cc = c?["compression_config"] as? [String: Any] {
            return .init(method: "compressed-tensors", source: "config.json compression_config", kvCache: scheme(cc))
        }
        return nil
    }

    /// vLLM's names for what a checkpoint declares (`modeloptMethods`, and the older spellings); a `*_marlin` kernel
    /// choice agrees with its base method.
    public static func quantizationAgrees(forced: String, checkpoint: String) -> Bool {
        let c = checkpoint.lowercased()
        let normalized = ["nvfp4": "modelopt_fp4", "fp8_modelopt": "modelopt", "compressed_tensors": "compressed-tensors",
                          "mixed_precision": "modelopt_mixed", "mxfp8": "modelopt_mxfp8"][c] ?? c
        return forced == normalized || forced == c || (forced.hasSuffix("_marlin") && normalized == String(forced.dropLast(7)))
    }

    /// A warning when the recipe's kv_cache_dtype disagrees with the KV quantization the checkpoint declares: its
    /// KV scales (`k_scale`/`v_scale`) were calibrated for an FP8 cache, and a 16-bit cache takes twice the memory
    /// per token that `sous fit` would size with fp8.
    public static func kvCacheWarning(_ q: CheckpointStatus.Quantization?, recipeKVDtype: String) -> String? {
        guard let q, let kv = q.kvCache else { return nil }
        if kv == "FP8", !recipeKVDtype.hasPrefix("fp8") {
            return "the checkpoint was calibrated for an FP8 KV cache (\(q.source)); the recipe's kv_cache_dtype is \(recipeKVDtype)"
        }
        return nil
    }

    /// One line for render and plan: the recipe's setting and what the checkpoint says.
    public static func quantizationLine(recipe: Recipe, detected: CheckpointStatus.Quantization?) -> String {
        let detectedText = detected.map { d in "the checkpoint says \(d.method)" + (d.algorithm.map { " (\($0), \(d.source))" } ?? " (\(d.source))")
            + (d.kvCache.map { ", KV cache \($0)" } ?? "") + (d.problem.map { " — \($0)" } ?? "") } ?? "the checkpoint declares no quantization"
        switch recipe.quantization {
        case .auto: return "quantization: auto → \(detectedText)"
        case .method(let m, _):
            let agrees = detected.map { quantizationAgrees(forced: m, checkpoint: $0.method) } ?? true
            return "quantization: \(m) (forced) → \(detectedText)" + (agrees ? "" : " — DISAGREES")
        }
    }
}
