import Foundation
import Yams

/// Where a sous recipe and a vllm-project recipe disagree, key by key and flag by flag, on one hardware profile.
public struct RecipeDiff: Sendable, Encodable {
    public struct Row: Sendable, Encodable, Equatable {
        public enum Status: String, Sendable, Encodable { case same, differs, only_sous, only_vllm_project }
        public var key: String
        public var status: Status
        public var sous: String?
        public var vllm_project: String?
        /// `file:line key` of the vllm-project value.
        public var vllm_project_at: String?
        public var note: String?
    }
    public var recipe: String
    public var file: String
    public var variant: String
    public var hardware: String
    public var vllm: String
    public var rows: [Row]
    public var differences: Int
    public var notes: [String]

    /// One line per difference, then the keys that agree.
    public var text: String {
        var out = "\(recipe) against \(file) (variant \(variant), hardware \(hardware), vLLM \(vllm)):\n"
        for n in notes { out += "  note: \(n)\n" }
        let label: [Row.Status: String] = [.differs: "differs", .only_sous: "only in sous", .only_vllm_project: "only in vllm-project"]
        for row in rows where row.status != .same {
            var line = "  " + label[row.status]!.padding(toLength: 21, withPad: " ", startingAt: 0) + row.key + ": sous " + (row.sous ?? "-")
                + " | vllm-project " + (row.vllm_project ?? "-")
            if let at = row.vllm_project_at { line += " (\(at))" } else if row.vllm_project != nil { line += " (not set in the file: vLLM's default)" }
            if let note = row.note { line += "; \(note)" }
            out += line.escapingControls + "\n"
        }
        let same = rows.filter { $0.status == .same }.map { $0.key + ($0.note.map { " (\($0))" } ?? "") }
        out += "  same: " + (same.isEmpty ? "nothing" : same.joined(separator: ", ")) + "\n"
        out += differences == 0 ? "no differences\n" : "\(differences) difference\(differences == 1 ? "" : "s")\n"
        return out
    }
}

public enum RecipeDiffer {
    /// The variant whose checkpoint is the recipe's model (else `default`), so a recipe for the NVFP4 checkpoint is
    /// compared with the file's nvfp4 variant without being told.
    static func variant(serving model: String, text: String) -> String? {
        guard let root = try? Yams.compose(yaml: text), let variants = root["variants"]?.mapping else { return nil }
        let base = root["model"]?["model_id"]?.string
        for (k, v) in variants {
            guard let name = k.string else { continue }
            if (v["model_id"]?.string ?? base) == model { return name }
        }
        return nil
    }

    public static func diff(recipe: Recipe, path: String, variant: String?, hardware: String?, features: [String],
                            version: VLLMVersion?) throws(ConfigErrors) -> RecipeDiff {
        let hw = hardware ?? recipe.hardwareProfiles.first ?? "dgx_spark_gb10"
        var notes: [String] = []
        let sink = IssueSink(file: path)
        guard let text = VLLMRecipes.readBounded(path, sink: sink) else { throw ConfigErrors(sink.issues) }
        var pick = variant
        if pick == nil {
            pick = Self.variant(serving: recipe.model, text: text)
            if pick == nil { notes.append("no variant of this file serves \(recipe.model): compared with its default variant") }
        }
        guard let profile = HardwareProfile.known[hw] else {
            throw ConfigErrors([ConfigIssue(file: "--hardware", location: nil, keyPath: "", problem: "`\(hw)` is not a hardware profile sous knows")])
        }
        let sel = VLLMRecipes.Selection(variant: pick, hardware: hw, features: features,
                                        nodes: max(1, recipe.tensorParallelSize / profile.gpusPerNode), gpusPerNode: profile.gpusPerNode)
        let (r, _) = try VLLMRecipes.resolve(text: text, file: path, sel, sink: sink)
        var issues: [ConfigIssue] = []
        let v = RecipeImporter.map(r, version: version, issues: &issues)
        if issues.contains(where: { $0.severity == .error }) { throw ConfigErrors(issues) }
        notes += r.notes
        let catalog = ParserCatalog.builtin
        let checkVersion = version ?? catalog.releases.last!.version
        let engine = recipe.engine(for: hw)
        var rows: [RecipeDiff.Row] = []
        func at(_ s: ImportedSetting?) -> String? { s?.origin }
        func row(_ key: String, _ sous: String?, _ up: String?, _ upAt: String?, note: String? = nil, same: Bool? = nil) {
            let status: RecipeDiff.Row.Status = (same ?? (sous == up)) ? .same : sous == nil ? .only_vllm_project : up == nil ? .only_sous : .differs
            rows.append(.init(key: key, status: status, sous: sous, vllm_project: up, vllm_project_at: upAt, note: note))
        }
        let base = (path as NSString).lastPathComponent
        func loc(_ l: SourceLocation?) -> String { "\(base)\(l.map { ":\($0.line)" } ?? "")" }

        row("model", recipe.model, r.model.value, "\(loc(r.model.at)) \(r.model.key)")
        row("min_vllm_version", recipe.minVLLMVersion.description, r.minVersion.value.description, "\(loc(r.minVersion.at)) \(r.minVersion.key)")
        let upLen = v.effective("max_model_len")
        row("max_model_len", String(engine.maxModelLen), upLen?.value ?? r.contextLength.map { String($0.value) },
            at(upLen) ?? r.contextLength.map { "\(loc($0.at)) \($0.key)" })
        for (key, kind, mine) in [("parsers.tool_call", ParserCatalog.Kind.toolCall, Optional(recipe.toolCallParser)), ("parsers.reasoning", .reasoning, recipe.reasoningParser)] {
            let up = v.effective(key)
            if let mine, let theirs = up?.value, mine != theirs {
                let alias = catalog.sameParser(mine, theirs, kind: kind, version: checkVersion)
                row(key, mine, theirs, at(up), note: alias ? "vllm-project's \(theirs) is the same parser on vLLM \(checkVersion)" : "different parsers on vLLM \(checkVersion)", same: alias)
            } else {
                row(key, mine, up?.value, at(up))
            }
        }
        let kv = v.effective("kv_cache_dtype")
        row("kv_cache_dtype", engine.kvCacheDtype, kv?.value ?? "auto", at(kv))
        let trust = v.effective("trust_remote_code")
        row("trust_remote_code", String(recipe.trustRemoteCode), trust?.value ?? "false", at(trust))
        let q = v.effective("quantization")
        let mineQ: String
        if case .method(let m, _) = recipe.quantization { mineQ = m } else { mineQ = "auto" }
        row("quantization", mineQ, q?.value ?? "auto", at(q))
        if let g = v.effective("gpu_memory_utilization") {
            row("gpu_memory_utilization", String(engine.gpuMemoryUtilization), g.value, at(g), same: Double(g.value) == engine.gpuMemoryUtilization)
        }
        if let c = v.effective("enable_chunked_prefill") { row("enable_chunked_prefill", String(engine.enableChunkedPrefill), c.value, at(c)) }
        let upSampling = v.keys.filter { $0.hasPrefix("sampling.") }
        if !upSampling.isEmpty {
            let mine = Dictionary(recipe.sampling.map { ("sampling.\($0.key)", $0.value) }, uniquingKeysWith: { a, _ in a })
            for key in (Array(mine.keys) + upSampling).reduce(into: [String](), { if !$0.contains($1) { $0.append($1) } }) {
                let up = v.effective(key)
                row(key, mine[key]?.text, up?.value, at(up), same: mine[key].map { m in up.flatMap { Double($0.value) } == m.value } ?? (up == nil))
            }
        }
        // Flags and variables, by name: the recipe's on this profile against the file's on this hardware.
        var flagKeys: [String] = engine.extraArgs.map { "extra_args." + $0.flag.replacingOccurrences(of: "-", with: "_") }
        for k in v.keys where k.hasPrefix("extra_args.") && !flagKeys.contains(k) { flagKeys.append(k) }
        for key in flagKeys {
            let flag = String(key.dropFirst(11)).replacingOccurrences(of: "_", with: "-")
            let mine = engine.extraArgs.last { $0.flag == flag }.map { a -> String in
                switch a.value { case .on: return "true"; case .off: return "false"; case .value(let s): return s }
            }
            let up = v.effective(key)
            row(key, mine, up?.value, at(up))
        }
        var envKeys = engine.env.map(\.name)
        for k in v.keys where k.hasPrefix("env.") && !envKeys.contains(String(k.dropFirst(4))) { envKeys.append(String(k.dropFirst(4))) }
        for (e, _) in r.excluded where !envKeys.contains(e.name) { envKeys.append(e.name) }
        for name in envKeys {
            let mine = engine.env.last { $0.name == name }?.value
            if let up = v.effective("env.\(name)") {
                row("env.\(name)", mine, up.value, at(up))
            } else if let (e, reason) = r.excluded.last(where: { $0.env.name == name }) {
                row("env.\(name)", mine, e.value, "\(loc(e.at)) \(e.layer)", note: "sous leaves it out on \(hw): \(reason)")
            } else {
                row("env.\(name)", mine, nil, nil)
            }
        }
        return RecipeDiff(recipe: recipe.file, file: path, variant: r.variant, hardware: hw,
                          vllm: version.map(\.description) ?? "\(checkVersion) (the newest sous knows)",
                          rows: rows, differences: rows.filter { $0.status != .same }.count, notes: notes)
    }
}
