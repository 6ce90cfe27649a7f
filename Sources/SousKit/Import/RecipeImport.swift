import Foundation

/// One value a vllm-project recipe gives, in sous's terms: a recipe key (`kv_cache_dtype`, `extra_args.max_num_seqs`,
/// `env.VLLM_X`, `parsers.tool_call`, `sampling.top_p`, …), its text, and where it was written.
public struct ImportedSetting: Sendable {
    public var key: String
    public var value: String
    /// `file:line key` for the comment.
    public var origin: String
    public var at: SourceLocation?
    /// From a hardware override: under the recipe's `hardware.<profile>` when the key can be per profile.
    public var hardware: Bool
}

/// The vllm-project recipe's values mapped onto sous's recipe keys, with what could not be mapped.
public struct ImportedValues: Sendable {
    public var resolved: VLLMRecipes.Resolved
    public var settings: [ImportedSetting]
    public var skipped: [VLLMRecipes.Skipped]

    /// Keys a recipe's `hardware.<profile>` block may override.
    static func perProfile(_ key: String) -> Bool {
        ["kv_cache_dtype", "max_model_len", "gpu_memory_utilization", "enable_chunked_prefill"].contains(key)
            || key.hasPrefix("extra_args.") || key.hasPrefix("env.")
    }

    /// The value in effect on the hardware (the last one written, as the site keeps).
    public func effective(_ key: String) -> ImportedSetting? { settings.last { $0.key == key } }

    /// The value for every other profile (what the recipe's top level gets) and the one under `hardware.<profile>`.
    func split(_ key: String) -> (general: ImportedSetting?, hardware: ImportedSetting?) {
        let all = settings.filter { $0.key == key }
        guard let last = all.last else { return (nil, nil) }
        if !Self.perProfile(key) { return (last, nil) }
        return last.hardware ? (all.last { !$0.hardware }, last) : (last, nil)
    }

    /// Keys in the order they first appear.
    var keys: [String] { settings.map(\.key).reduce(into: []) { if !$0.contains($1) { $0.append($1) } } }
}

public enum RecipeImporter {
    public struct Options: Sendable {
        public var path: String
        public var variant: String?
        public var hardware: String?
        public var features: [String] = []
        public var inventory: Inventory?
        /// The vLLM release to check parsers against when there is no inventory (or to override its image's).
        public var vllm: VLLMVersion?
        /// A local checkpoint directory (generation_config.json, config.json, hf_quant_config.json).
        public var checkpoint: String?
        /// The recipe's `name` (from --write's file name); derived from the model id when nil.
        public var name: String?
        /// How the written recipe is named in validation messages.
        public var outputFile: String
        public var environment: [String: String] = ProcessInfo.processInfo.environment
        public init(path: String, outputFile: String) { (self.path, self.outputFile) = (path, outputFile) }
    }

    public struct Result: Sendable {
        public var text: String
        public var recipe: Recipe
        public var values: ImportedValues
        public var notes: [String]
        public var warnings: [ConfigIssue]
    }

    /// The hardware profile, node count and GPUs the import sizes the recipe for.
    static func selection(_ o: Options, path: String) throws(ConfigErrors) -> VLLMRecipes.Selection {
        let hw = o.hardware ?? o.inventory?.hardware ?? "dgx_spark_gb10"
        guard let profile = HardwareProfile.known[hw] else {
            throw ConfigErrors([ConfigIssue(file: "--hardware", location: nil, keyPath: "", problem: "`\(hw)` is not a hardware profile sous knows",
                                            hint: "known: \(HardwareProfile.known.keys.sorted().joined(separator: ", "))")])
        }
        return VLLMRecipes.Selection(variant: o.variant, hardware: hw, features: o.features, nodes: o.inventory?.nodes.count ?? 2, gpusPerNode: profile.gpusPerNode)
    }

    /// Resolves the file and maps its values; what cannot be a value is listed, and errors carry the file's lines.
    public static func values(_ o: Options) throws(ConfigErrors) -> (ImportedValues, [ConfigIssue]) {
        let sel = try selection(o, path: o.path)
        let (r, warnings) = try VLLMRecipes.resolve(path: o.path, sel)
        var issues = warnings
        let v = map(r, version: o.vllm ?? o.inventory?.vllmVersion, issues: &issues)
        if issues.contains(where: { $0.severity == .error }) { throw ConfigErrors(issues) }
        return (v, issues)
    }

    static let parallelFlags = ["pipeline-parallel-size", "data-parallel-size", "data-parallel-size-local", "data-parallel-address",
                                "data-parallel-start-rank", "data-parallel-rpc-port", "data-parallel-hybrid-lb"]

    /// Maps every argument and variable onto recipe keys (file order kept).
    static func map(_ r: VLLMRecipes.Resolved, version: VLLMVersion?, issues: inout [ConfigIssue]) -> ImportedValues {
        let base = (r.file as NSString).lastPathComponent
        var settings: [ImportedSetting] = [], skipped = r.skipped
        func origin(_ at: SourceLocation?, _ key: String) -> String { "\(base)\(at.map { ":\($0.line)" } ?? "") \(key)" }
        func skip(_ a: VLLMRecipes.Arg, _ reason: String) {
            skipped.append(.init(file: r.file, line: a.at?.line, key: "\(a.layer): \(a.flag)\(a.value.map { " \($0)" } ?? "")", reason: reason))
        }
        func error(_ a: VLLMRecipes.Arg, _ problem: String, hint: String? = nil) {
            issues.append(ConfigIssue(file: r.file, location: a.at, keyPath: a.layer, problem: problem, hint: hint))
        }
        func add(_ key: String, _ value: String, _ a: VLLMRecipes.Arg) {
            settings.append(ImportedSetting(key: key, value: value, origin: origin(a.at, a.layer), at: a.at, hardware: a.hardware))
        }
        for a in r.args {
            guard a.flag.hasPrefix("--") else {
                skip(a, "sous's extra_args take long flags; write it as the long flag vLLM has for it")
                continue
            }
            let name = String(a.flag.dropFirst(2))
            switch name {
            case "tool-call-parser", "reasoning-parser":
                guard let v = a.value else { error(a, "\(a.flag) needs a parser name"); continue }
                add(name == "tool-call-parser" ? "parsers.tool_call" : "parsers.reasoning", v, a)
            case "enable-auto-tool-choice":
                continue  // sous renders it with every tool-call parser
            case "kv-cache-dtype":
                guard let v = a.value, RecipeReader.kvCacheDtypes.contains(v) else {
                    error(a, "`\(a.value ?? "")` is not a vLLM KV cache dtype", hint: "one of: \(RecipeReader.kvCacheDtypes.joined(separator: ", "))")
                    continue
                }
                add("kv_cache_dtype", v, a)
            case "max-model-len":
                if a.value == "auto" || a.value == "-1" { skip(a, "sous needs a number: max_model_len comes from context_length"); continue }
                guard let v = a.value.flatMap(tokenCount) else { error(a, "`\(a.value ?? "")` is not a token count for --max-model-len"); continue }
                add("max_model_len", String(v), a)
            case "gpu-memory-utilization":
                guard let t = a.value, let v = Double(t), v > 0, v < 1 else { error(a, "`\(a.value ?? "")` is not a fraction between 0 and 1"); continue }
                add("gpu_memory_utilization", t, a)
            case "trust-remote-code", "no-trust-remote-code":
                add("trust_remote_code", name.hasPrefix("no-") || a.value == "false" || a.value == "False" ? "false" : "true", a)
            case "enable-chunked-prefill", "no-enable-chunked-prefill":
                add("enable_chunked_prefill", name.hasPrefix("no-") || a.value == "false" || a.value == "False" ? "false" : "true", a)
            case "quantization":
                guard let v = a.value else { error(a, "--quantization needs a method"); continue }
                if !RecipeReader.quantizationMethods.contains(v) {
                    error(a, "`\(v)` is not a quantization method sous knows", hint: didYouMean(v, in: RecipeReader.quantizationMethods).map { "did you mean `\($0)`?" })
                    continue
                }
                add("quantization", v, a)
            case "override-generation-config":
                guard let v = a.value, let object = try? JSONSerialization.jsonObject(with: Data(v.utf8)) as? [String: Any] else {
                    error(a, "--override-generation-config takes a JSON object")
                    continue
                }
                for key in object.keys.sorted() {
                    if RecipeReader.samplingKeys.contains(key), let n = object[key] as? NSNumber, n.doubleValue.isFinite, !(object[key] is Bool) {
                        add("sampling.\(key)", "\(n)", a)
                    } else {
                        skipped.append(.init(file: r.file, line: a.at?.line, key: "\(a.layer): --override-generation-config \(key)",
                                             reason: "not a sampling key sous models (\(RecipeReader.samplingKeys.joined(separator: ", ")))"))
                    }
                }
            default:
                if let owner = RecipeReader.managedFlags[name] {
                    skip(a, "not copied: sous renders --\(name) from \(owner)")
                } else if parallelFlags.contains(name) {
                    skip(a, "not copied: sous runs one tensor-parallel engine over the inventory's GPUs (tensor_parallel_size \(r.tensorParallelSize))")
                } else if name.matchesWhole("[a-z0-9][a-z0-9-]*") {
                    var flag = name, value = a.value ?? "true"
                    if a.value == nil, name.hasPrefix("no-") { flag = String(name.dropFirst(3)); value = "false" }
                    if let owner = RecipeReader.managedFlags[flag] { skip(a, "not copied: sous renders --\(flag) from \(owner)"); continue }
                    add("extra_args." + flag.replacingOccurrences(of: "-", with: "_"), value, a)
                } else {
                    skip(a, "sous's extra_args take long flags of lowercase letters, digits and '-'")
                }
            }
        }
        let written = ["PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"]
        for e in r.env {
            let a = VLLMRecipes.Arg(flag: e.name, value: e.value, at: e.at, layer: e.layer, hardware: e.hardware, viaGeneration: e.viaGeneration)
            func skipEnv(_ reason: String) { skipped.append(.init(file: r.file, line: e.at?.line, key: "\(e.layer).\(e.name)", reason: reason)) }
            if !e.name.matchesWhole(InventoryReader.envNamePattern) { skipEnv("not an environment variable name"); continue }
            if e.name == "NCCL_IB_GID_INDEX" { skipEnv("not copied: a pinned GID index hangs the tensor-parallel handshake when the RoCE GID table drifts"); continue }
            if let owner = RecipeReader.managedEnv[e.name] { skipEnv("not copied: sous writes \(e.name) from \(owner)"); continue }
            if written[e.name] == e.value { skipEnv("sous writes \(e.name)=\(e.value) on every node already"); continue }
            if e.value.contains("$") { skipEnv("`\(e.value)` is a placeholder the site's command fills in; set the real value in the recipe's env"); continue }
            if controlCharacterProblem(e.value) != nil { skipEnv("the value holds a control character"); continue }
            add("env.\(e.name)", e.value, a)
        }
        // Parsers: registered in the releases sous knows, and in the image's.
        let catalog = ParserCatalog.builtin
        for (key, kind) in [("parsers.tool_call", ParserCatalog.Kind.toolCall), ("parsers.reasoning", .reasoning)] {
            guard let s = settings.last(where: { $0.key == key }) else { continue }
            if catalog.firstRelease(with: s.value, kind: kind) == nil {
                let all = Set(catalog.releases.flatMap { Array(catalog.table($0, kind).keys) }).sorted()
                issues.append(ConfigIssue(file: r.file, location: s.at, keyPath: String(s.origin.split(separator: " ").last ?? ""),
                                          problem: "`\(s.value)` is not a \(kind.rawValue) parser in any vLLM release sous knows (\(catalog.releases.first!.version)–\(catalog.releases.last!.version))",
                                          hint: didYouMean(s.value, in: all).map { "did you mean `\($0)`?" } ?? "see `sous parsers --kind \(kind.rawValue)`"))
                continue
            }
            if let version, case .unknown(let suggestion) = catalog.check(s.value, kind: kind, version: version) {
                issues.append(ConfigIssue(file: r.file, location: s.at, keyPath: String(s.origin.split(separator: " ").last ?? ""),
                                          problem: "`\(s.value)` is not a registered \(kind.rawValue) parser in vLLM \(version) (the image's release); vLLM would refuse to start",
                                          hint: suggestion.map { "did you mean `\($0)`? or use a newer image" } ?? catalog.firstRelease(with: s.value, kind: kind).map { "it first appears in vLLM \($0): use a newer image" }))
            }
        }
        return ImportedValues(resolved: r, settings: settings, skipped: skipped)
    }

    /// `131072`, `128k` (×1000) or `128K` (×1024), as vLLM's --max-model-len reads them.
    static func tokenCount(_ t: String) -> Int? {
        if let n = Int(t), n > 0 { return n }
        guard let last = t.last, let n = Int(t.dropLast()), n > 0, n < 100_000_000 else { return nil }
        return ["k": 1000, "K": 1024, "m": 1_000_000, "M": 1 << 20][last].map { n * $0 }
    }

    // MARK: the recipe file

    /// Imports one file: the recipe text (validated as `sous recipes` and, with an inventory, as `sous render` would),
    /// with a comment after every value naming where it came from and a list of what was not imported.
    public static func run(_ o: Options) throws(ConfigErrors) -> Result {
        var (values, issues) = try Self.values(o)
        let r = values.resolved
        let base = (r.file as NSString).lastPathComponent
        func loc(_ at: SourceLocation?) -> String { "\(base)\(at.map { ":\($0.line)" } ?? "")" }
        var notes = r.notes
        var lines: [(String, String?)] = []
        func line(_ text: String, _ comment: String? = nil) { lines.append((text, comment)) }
        let version = o.vllm ?? o.inventory?.vllmVersion
        let catalog = ParserCatalog.builtin

        // The checkpoint: sampling defaults and output length; what quantization it declares.
        let gen = GenerationConfig.lookup(model: r.model.value, revision: nil, checkpoint: o.checkpoint, environment: o.environment)
        var quantNote: String?
        if let dir = o.checkpoint {
            let config = GenerationConfig.read(dir + "/config.json", max: 8 << 20)
            let hfq = GenerationConfig.read(dir + "/hf_quant_config.json", max: 1 << 20)
            if let q = Checkpoint.detectQuantization(configJSON: config, hfQuantConfigJSON: hfq) {
                quantNote = "the checkpoint in \(dir) declares \(q.method) (\(q.source))" + (q.kvCache.map { ", KV cache \($0)" } ?? "")
                if q.kvCache == "FP8", (values.effective("kv_cache_dtype")?.value ?? "auto") == "auto" {
                    notes.append("the checkpoint was calibrated for an FP8 KV cache (\(q.source)) but the file sets no --kv-cache-dtype: consider kv_cache_dtype: fp8")
                }
            }
        }
        var sampling: [(key: String, value: String, origin: String)] = []
        var maxNew: (Int, String)?
        switch gen {
        case .found(let d):
            for (k, n) in d.sampling { sampling.append((k, n.text, "\(d.source) \(k)")) }
            if let m = d.maxNewTokens { maxNew = (m, "\(d.source) max_new_tokens") }
            for i in d.ignored { values.skipped.append(.init(file: d.source, line: nil, key: "sampling", reason: i)) }
        case .absent: break
        }
        for s in values.settings where s.key.hasPrefix("sampling.") {
            let k = String(s.key.dropFirst(9))
            sampling.removeAll { $0.key == k }
            sampling.append((k, s.value, s.origin))
        }

        // Header
        let inv = o.inventory.map { " (\($0.file))" } ?? " (no --inventory: sous's DGX Spark pair)"
        line("# Imported by `sous recipes import` from \(r.file) (vllm-project/recipes format):")
        line("# variant \(r.variant), hardware \(r.hardware) (\(r.brand.uppercased()) \(r.generation)), \(r.strategy) on \(o.inventory?.nodes.count ?? 2) nodes\(inv),")
        line("# features \(r.features.isEmpty ? "none" : r.features.joined(separator: ", ")); parsers checked against vLLM \(version.map(\.description) ?? "\(catalog.releases.last!.version) (the newest sous knows; no image given)").")
        line("# After each value, where it came from (file:line key); \"sous default\" marks what the file does not say.")
        for n in notes { line("# Note: \(n.escapingControls)") }

        // Values
        let name = o.name ?? derivedName(r.model.value)
        line("name: \(name)", o.name != nil ? "the --write file name" : "from the model id")
        line("model: \(yaml(r.model.value))", "\(loc(r.model.at)) \(r.model.key)")
        line("served_model_name: \(yaml(r.model.value))", "sous default: the model id")
        line("source: \(yaml("https://huggingface.co/\(r.model.value)"))", "the model card of \(r.model.value)")
        var minVersion = r.minVersion.value
        var minComment = "\(loc(r.minVersion.at)) \(r.minVersion.key)"
        for (key, kind) in [("parsers.tool_call", ParserCatalog.Kind.toolCall), ("parsers.reasoning", .reasoning)] {
            guard let p = values.effective(key), let first = catalog.firstRelease(with: p.value, kind: kind) else { continue }
            if first > minVersion, catalog.releases.contains(where: { $0.version <= minVersion }), catalog.release(atOrBelow: minVersion).version < first {
                minComment = "raised from \(minVersion) (\(minComment)): \(p.value) is registered from vLLM \(first) on"
                minVersion = first
            }
        }
        line("min_vllm_version: \(minVersion)", minComment)
        guard let tool = values.effective("parsers.tool_call") else {
            throw ConfigErrors(issues + [ConfigIssue(file: r.file, location: r.featuresAt, keyPath: "features.tool_calling",
                                                     problem: "the file gives no --tool-call-parser for \(r.variant) on \(r.hardware): a sous recipe serves agents and needs one",
                                                     hint: "if a feature gives it and is opt-in, name it with --features")])
        }
        line("parsers:")
        func parserComment(_ s: ImportedSetting, _ kind: ParserCatalog.Kind) -> String {
            var c = s.origin + (s.key == "parsers.tool_call" ? " (with --enable-auto-tool-choice)" : "")
            if s.hardware { c += "; from the \(r.hardware) override, for every profile" }
            if let v = version {
                let t = catalog.table(catalog.release(atOrBelow: v), kind)
                if let cls = t[s.value] {
                    let aliases = t.filter { $0.value == cls && $0.key != s.value }.keys.sorted()
                    if !aliases.isEmpty { c += "; on vLLM \(v) the same parser as \(aliases.joined(separator: ", "))" }
                }
            }
            return c
        }
        line("  tool_call: \(yaml(tool.value))", parserComment(tool, .toolCall))
        if let reasoning = values.effective("parsers.reasoning") { line("  reasoning: \(yaml(reasoning.value))", parserComment(reasoning, .reasoning)) }
        if let q = values.effective("quantization") {
            line("quantization: \(q.value)", q.origin)
            line("quantization_reason: \(yaml("vllm-project/recipes passes --quantization \(q.value) (\(loc(q.at)))"))")
        } else {
            let precision = r.precision.map { "precision \($0.value) (\(loc($0.at)) \($0.key))" } ?? "no precision given"
            line("quantization: auto", "\(precision): vLLM reads the method from the checkpoint" + (quantNote.map { "; \($0)" } ?? ""))
        }
        let split = { (key: String) in values.split(key) }
        let kv = split("kv_cache_dtype").general
        line("kv_cache_dtype: \(kv?.value ?? "auto")", kv?.origin ?? "not set in the file: vLLM's default")
        let maxLen = split("max_model_len").general
        guard let maxLenValue = maxLen.flatMap({ Int($0.value) }) ?? r.contextLength?.value else {
            throw ConfigErrors(issues + [ConfigIssue(file: r.file, location: nil, keyPath: "model.context_length", problem: "the file gives neither context_length nor --max-model-len")])
        }
        line("max_model_len: \(maxLenValue)", maxLen?.origin ?? r.contextLength.map { "\(loc($0.at)) \($0.key)" })
        let gmu = split("gpu_memory_utilization").general
        line("gpu_memory_utilization: \(gmu?.value ?? "0.8")", gmu?.origin ?? "sous default: leaves the OS room in unified memory (the file does not say)")
        line("tensor_parallel_size: \(r.tensorParallelSize)",
             "\(r.strategy): \(o.inventory?.nodes.count ?? 2) nodes × \(HardwareProfile.known[r.hardware]!.gpusPerNode) GPU" + (o.inventory.map { " (\($0.file))" } ?? ""))
        let trust = split("trust_remote_code").general
        line("trust_remote_code: \(trust?.value ?? "false")", trust?.origin ?? "the file does not pass --trust-remote-code")
        if let c = split("enable_chunked_prefill").general { line("enable_chunked_prefill: \(c.value)", c.origin) }
        if sampling.isEmpty {
            let why: String
            switch gen {
            case .absent(let w): why = w
            case .found(let d): why = "\(d.source) names none of \(GenerationConfig.keys.joined(separator: ", "))"
            }
            line("# sampling: left for you: \(why).")
            line("# Without it vLLM uses the checkpoint's own generation_config.json; add the model card's recommended")
            line("# values here to make them explicit (and audited).")
        } else {
            line("sampling:")
            for s in sampling { line("  \(s.key): \(s.value)", s.origin) }
        }
        let hwMaxLen = split("max_model_len").hardware.flatMap { Int($0.value) }
        let limit = min(maxLenValue, hwMaxLen ?? maxLenValue)
        let output: Int, outputComment: String
        if let (m, origin) = maxNew, m < limit / 2 {
            (output, outputComment) = (m, origin)
        } else {
            output = min(32768, limit / 4)
            outputComment = "left for you: sous default (max_model_len/4, at most 32768)" + (maxNew.map { "; \($0.1) is \($0.0), too close to max_model_len" } ?? "; no max_new_tokens in a generation_config.json") + "; set the card's output length"
        }
        line("client:")
        line("  context: \(limit - output)", "max_model_len minus the output budget")
        line("  output: \(output)", outputComment)
        func block(_ prefix: String, hardware: Bool) -> [(String, String, String)] {
            values.keys.filter { $0.hasPrefix(prefix) }.compactMap { k in
                let s = hardware ? split(k).hardware : split(k).general
                return s.map { (String(k.dropFirst(prefix.count)), $0.value, $0.origin) }
            }
        }
        let extra = block("extra_args.", hardware: false), env = block("env.", hardware: false)
        if !extra.isEmpty {
            line("extra_args:")
            for (k, v, c) in extra { line("  \(k): \(yamlFlagValue(v))", c) }
        }
        if !env.isEmpty {
            line("env:")
            for (k, v, c) in env { line("  \(k): \(jsonQuoted(v))", c) }
        }
        let hwKeys = ["kv_cache_dtype", "max_model_len", "gpu_memory_utilization", "enable_chunked_prefill"].compactMap { k in split(k).hardware.map { (k, $0) } }
        let hwExtra = block("extra_args.", hardware: true), hwEnv = block("env.", hardware: true)
        if !hwKeys.isEmpty || !hwExtra.isEmpty || !hwEnv.isEmpty {
            let layers = Set(values.settings.filter(\.hardware).map { s -> String in
                let layer = String(s.origin.split(separator: " ").last ?? "")
                return layer.hasSuffix(".extra_args") || layer.hasSuffix(".extra_env") ? String(layer[..<layer.lastIndex(of: ".")!]) : layer
            })
            line("hardware:")
            line("  \(r.hardware):", "from " + layers.sorted().joined(separator: ", "))
            for (k, s) in hwKeys { line("    \(k): \(s.value)", s.origin) }
            if !hwExtra.isEmpty {
                line("    extra_args:")
                for (k, v, c) in hwExtra { line("      \(k): \(yamlFlagValue(v))", c) }
            }
            if !hwEnv.isEmpty {
                line("    env:")
                for (k, v, c) in hwEnv { line("      \(k): \(jsonQuoted(v))", c) }
            }
        }
        // Values a later one replaced (the site keeps the last): listed too.
        for key in values.keys {
            let (g, h) = split(key)
            for s in values.settings where s.key == key && !(g.map { $0.origin == s.origin && $0.value == s.value } ?? false) && !(h.map { $0.origin == s.origin && $0.value == s.value } ?? false) {
                values.skipped.append(.init(file: r.file, line: s.at?.line, key: "\(s.origin.split(separator: " ").last ?? ""): \(key) \(s.value)",
                                            reason: "replaced by a later value (the last one wins, as on the site)"))
            }
        }
        var header = lines.prefix { $0.0.hasPrefix("#") }.map { $0 }
        let body = Array(lines.dropFirst(header.count))
        header.append(("# Not imported (listed, never dropped):", nil))
        if values.skipped.isEmpty { header.append(("#   nothing", nil)) }
        for s in values.skipped {
            header.append(("#   \((s.file as NSString).lastPathComponent)\(s.line.map { ":\($0)" } ?? ""): \(s.key.escapingControls): \(s.reason.escapingControls)", nil))
        }
        let text = format(header + body)

        // The result must be a recipe sous accepts, and render on the inventory.
        let recipe: Recipe
        do {
            let (rec, w) = try RecipeReader.parse(text, file: o.outputFile)
            recipe = rec
            issues += w
        } catch {
            throw ConfigErrors(issues + error.issues)
        }
        if let inventory = o.inventory {
            // The pair's checks (versions, parsers on the image, tp): a problem is named at the file's line that
            // gave the value, since the recipe is not written.
            func upstream(_ i: ConfigIssue) -> ConfigIssue {
                guard i.file == o.outputFile else { return i }
                var at: SourceLocation?
                switch i.keyPath {
                case "min_vllm_version": at = r.minVersion.at
                case "max_model_len": at = values.effective("max_model_len")?.at ?? r.contextLength?.at
                default: at = values.effective(i.keyPath)?.at
                }
                return ConfigIssue(i.severity, file: r.file, location: at, keyPath: "imported \(i.keyPath)", problem: i.problem, hint: i.hint)
            }
            do { issues = try Deployment.make(recipe: recipe, inventory: inventory, issues: issues).warnings.map(upstream) } catch { throw ConfigErrors(error.issues.map(upstream)) }
        }
        return Result(text: text, recipe: recipe, values: values, notes: notes, warnings: issues.filter { $0.severity == .warning })
    }

    /// `openai/gpt-oss-120b` → `gpt-oss-120b`.
    static func derivedName(_ model: String) -> String {
        let last = model.split(separator: "/").last.map(String.init) ?? model
        let lowered = last.lowercased().map { c -> Character in c.isLetter || c.isNumber || c == "." || c == "_" || c == "-" ? c : "-" }
        let s = String(lowered).trimmingCharacters(in: CharacterSet(charactersIn: "-._"))
        return s.isEmpty ? "imported" : s
    }

    /// Lines with their comments lined up at one column (as the shipped recipes write them).
    static func format(_ lines: [(String, String?)]) -> String {
        let column = 34
        return lines.map { text, comment in
            guard let comment else { return text }
            let pad = max(1, column - text.count)
            return text + String(repeating: " ", count: pad) + "# " + comment.escapingControls
        }.joined(separator: "\n") + "\n"
    }

    /// A YAML scalar for a string: plain when it cannot be read as anything else, else double-quoted (JSON).
    static func yaml(_ s: String) -> String {
        let reserved = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"]
        if s.matchesWhole("[A-Za-z0-9_][A-Za-z0-9._/:+-]*"), !reserved.contains(s.lowercased()), Double(s) == nil { return s }
        return jsonQuoted(s)
    }

    /// An extra_args value: `true`/`false` stay plain (a bare flag, its `--no-` form), numbers plain, the rest quoted.
    static func yamlFlagValue(_ s: String) -> String {
        if s == "true" || s == "false" { return s }
        if s.matchesWhole("-?[0-9]+(\\.[0-9]+)?") { return s }
        return yaml(s)
    }

    static func jsonQuoted(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }
}
