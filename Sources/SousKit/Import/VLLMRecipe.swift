import Foundation
import Yams

/// A vllm-project/recipes model file (`models/<org>/<model>.yaml`) resolved for one variant, one hardware profile,
/// one serving strategy and a set of features: the `vllm serve` arguments and environment the site would give, each
/// with the line it was written on, and everything the file says that does not become one of them.
///
/// The format is the one vllm-project/recipes documents in CLAUDE.md ("Recipe YAML schema (authoritative)"); the
/// layering and its precedence copy `src/lib/command-synthesis.js` at commit 8959cf6 (`resolveCommand`: buildArgs
/// steps 1–7 and buildEnv, lines 1005–1332 and 1334–1468): base_args, the variant's extra_args, the variant's
/// exact-hardware override, the strategy's overrides, the generation override (`<generation>`, else the brand-wide
/// `nvidia`) of the recipe and of the variant — replaced by the strategy's generation override when it has one —,
/// then the features; a later value of a flag wins (dedupeArgs, lines 785–829), as a later env key does.
public enum VLLMRecipes {
    /// What to resolve.
    public struct Selection: Sendable {
        public var variant: String?
        /// A hardware profile sous knows (`HardwareProfile.known`).
        public var hardware: String
        /// Features to turn on besides the file's default ones (`name` or `name:mode`).
        public var features: [String]
        public var nodes: Int
        public var gpusPerNode: Int
        public init(variant: String? = nil, hardware: String = "dgx_spark_gb10", features: [String] = [], nodes: Int = 2, gpusPerNode: Int = 1) {
            (self.variant, self.hardware, self.features, self.nodes, self.gpusPerNode) = (variant, hardware, features, nodes, gpusPerNode)
        }
    }

    /// The vllm-project/recipes taxonomy entry of each hardware profile sous knows: its brand and generation,
    /// which pick the `hardware_overrides` keys that apply (taxonomy.yaml lines 83–92 at 8959cf6:
    /// `dgx_spark_gb10: brand: NVIDIA, generation: blackwell`).
    static let taxonomy: [String: (brand: String, generation: String)] = ["dgx_spark_gb10": ("nvidia", "blackwell")]

    /// Settings a generation-wide override gives a hardware profile that do not hold on it. They are left out
    /// when they come from a `<generation>`/`nvidia` block (an override keyed by the profile itself is kept: its
    /// author meant that hardware), and said so in the list of what was not imported.
    static let exclusions: [(hardware: String, env: String, reason: String)] = [
        ("dgx_spark_gb10", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8",
         "a B200 setting (vllm-project/recipes models/openai/gpt-oss-120b.yaml guide: \"Blackwell (B200) with FlashInfer MXFP4+MXFP8 MoE\"); vLLM issue #41477 reports the FlashInfer MXFP4 MoE kernels unsupported on SM121 (GB10)"),
    ]

    /// One `vllm serve` argument as the file writes it: `--flag value`, `--flag=value` or a bare `--flag`.
    public struct Arg: Sendable {
        public var flag: String
        public var value: String?
        public var at: SourceLocation?
        /// The key path of the list it is in, e.g. `variants.nvfp4.extra_args`.
        public var layer: String
        /// From a hardware override (goes under the recipe's `hardware.<profile>`).
        public var hardware: Bool
        /// From a `<generation>` or `nvidia` block rather than one keyed by the profile itself.
        public var viaGeneration: Bool
    }

    public struct Env: Sendable {
        public var name: String
        public var value: String
        public var at: SourceLocation?
        public var layer: String
        public var hardware: Bool
        public var viaGeneration: Bool
    }

    /// Something the file says that did not become a value, and why.
    public struct Skipped: Sendable, Encodable, Equatable {
        public var file: String
        public var line: Int?
        public var key: String
        public var reason: String
        public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(key): \(reason)" }
    }

    public struct Located<T: Sendable>: Sendable {
        public var value: T
        public var at: SourceLocation?
        public var key: String
    }

    public struct Resolved: Sendable {
        public var file: String
        public var model: Located<String>
        public var minVersion: Located<VLLMVersion>
        public var contextLength: Located<Int>?
        public var precision: Located<String>?
        public var variant: String
        public var variantNames: [String]
        public var hardware: String
        public var brand: String
        public var generation: String
        public var strategy: String
        public var tensorParallelSize: Int
        /// The features on, with the mode picked for a feature that has modes.
        public var features: [String]
        public var args: [Arg]
        public var env: [Env]
        /// Settings left out for the hardware (`exclusions`), with the reason.
        public var excluded: [(env: Env, reason: String)]
        public var skipped: [Skipped]
        /// Where the file's `features:` key is (or its first line), for errors about what no feature gives.
        public var featuresAt: SourceLocation?
        /// Things to tell the user that are not a value (a strategy vllm-project/recipes does not list, …).
        public var notes: [String]

        /// The value a flag ends with (the last one, as the site's dedupe keeps).
        public func last(_ flags: [String]) -> Arg? { args.last { flags.contains($0.flag) } }
    }

    /// Reads and resolves a file; every problem at once, each with its line.
    public static func resolve(path: String, _ selection: Selection) throws(ConfigErrors) -> (Resolved, [ConfigIssue]) {
        let sink = IssueSink(file: path)
        guard let text = readBounded(path, sink: sink) else { throw ConfigErrors(sink.issues) }
        return try resolve(text: text, file: path, selection, sink: sink)
    }

    public static func resolve(text: String, file: String, _ selection: Selection) throws(ConfigErrors) -> (Resolved, [ConfigIssue]) {
        try resolve(text: text, file: file, selection, sink: IssueSink(file: file))
    }

    /// A node read twice reports its problem twice; once is enough.
    static func unique(_ issues: [ConfigIssue]) -> [ConfigIssue] {
        issues.reduce(into: []) { out, i in if !out.contains(i) { out.append(i) } }
    }

    /// A recipe file is text of a few kilobytes; anything past 4 MiB is not one.
    static func readBounded(_ path: String, sink: IssueSink) -> String? {
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > 4 << 20 {
            sink.error(nil, "", "\(size) bytes is too large for a recipe file (at most 4 MiB)")
            return nil
        }
        return readText(path, sink: sink)
    }

    // MARK: resolving

    static func resolve(text: String, file: String, _ sel: Selection, sink: IssueSink) throws(ConfigErrors) -> (Resolved, [ConfigIssue]) {
        guard let root = parseYAML(text, sink: sink), let top = root.mapping(allowed: nil) else { throw ConfigErrors(sink.issues) }
        var r = Resolver(file: file, sel: sel, sink: sink, top: top)
        r.run()
        guard !sink.hasErrors, let resolved = r.result else { throw ConfigErrors(unique(sink.issues)) }
        return (resolved, unique(sink.issues))
    }

    struct Resolver {
        let file: String
        let sel: Selection
        let sink: IssueSink
        let top: YMap
        var args: [Arg] = []
        var env: [Env] = []
        var excluded: [(env: Env, reason: String)] = []
        var skipped: [Skipped] = []
        var notes: [String] = []
        var result: Resolved?
        var consumed: Set<String> = []

        init(file: String, sel: Selection, sink: IssueSink, top: YMap) {
            (self.file, self.sel, self.sink, self.top) = (file, sel, sink, top)
        }

        mutating func skip(_ v: YValue?, _ key: String, _ reason: String) {
            skipped.append(Skipped(file: file, line: v?.location?.line, key: key, reason: reason))
        }

        mutating func run() {
            let hw = sel.hardware
            guard let tax = VLLMRecipes.taxonomy[hw] else {
                sink.error(nil, "", "sous does not know the vllm-project/recipes brand and generation of hardware `\(hw)`",
                           hint: "known: \(VLLMRecipes.taxonomy.keys.sorted().joined(separator: ", "))")
                return
            }
            let (brand, gen) = tax

            // model
            consumed.insert("model")
            guard let model = top.required("model", what: "model_id, min_vllm_version, context_length, base_args, base_env")?.mapping(allowed: nil) else { return }
            let baseID = model.required("model_id")?.string()
            var minVersion: Located<VLLMVersion>?
            if let v = model.required("min_vllm_version"), let t = v.string() {
                if let parsed = Self.version(t) { minVersion = Located(value: parsed, at: v.location, key: "model.min_vllm_version") } else {
                    sink.error(v.node, v.path, "`\(t)` is not a version like 0.17.1")
                }
            }
            var context: Located<Int>?
            // 0 is what the format's image and audio models write: no context.
            if let c = model["context_length"], let n = c.int(range: 0...100_000_000), n > 0 { context = Located(value: n, at: c.location, key: "model.context_length") }
            for entry in model.entries where !["model_id", "min_vllm_version", "context_length", "base_args", "base_env",
                                                "architecture", "parameter_count", "active_parameters"].contains(entry.key) {
                skip(entry.value, entry.value.path, entry.key == "docker_image" ? "an image for the site's Docker tab: the inventory pins the image sous runs"
                     : entry.key == "nightly_required" ? "needs a nightly vLLM: pin an image that has what it needs" : "not a setting sous models")
            }

            // features and opt-in features
            consumed.formUnion(["features", "opt_in_features", "hardware_opt_in_features"])
            let features = top["features"]?.mapping(allowed: nil)
            let featureNames = features?.entries.map(\.key) ?? []
            var optIn: [String] = []
            for item in top["opt_in_features"]?.sequence() ?? [] {
                guard let name = item.string() else { continue }
                if !featureNames.contains(name) { unknownFeature(name, at: item.node, features: features, from: item.path) } else { optIn.append(name) }
            }
            var hardwareOptIn: [String] = []
            if let h = top["hardware_opt_in_features"]?.mapping(allowed: nil) {
                for entry in h.entries {
                    for item in entry.value.sequence() ?? [] {
                        guard let name = item.string() else { continue }
                        if !featureNames.contains(name) { unknownFeature(name, at: item.node, features: features, from: item.path) }
                        if entry.key == hw { hardwareOptIn.append(name) }
                    }
                }
            }
            var requested: [(name: String, mode: String?)] = []
            for f in sel.features {
                let parts = f.split(separator: ":", maxSplits: 1).map(String.init)
                guard let name = parts.first, !name.isEmpty else { continue }
                if !featureNames.contains(name) {
                    unknownFeature(name, at: features?.node ?? top["features"]?.node ?? top.node, features: features, from: "--features")
                } else { requested.append((name, parts.count > 1 ? parts[1] : nil)) }
            }

            // variant
            consumed.insert("variants")
            guard let variants = top.required("variants", what: "at least a `default` variant")?.mapping(allowed: nil) else { return }
            let variantName = sel.variant ?? "default"
            let names = variants.entries.map(\.key)
            guard let vValue = variants[variantName] else {
                let guess = didYouMean(variantName, in: names)
                sink.error(variants.node, "variants.\(variantName)",
                           sel.variant == nil ? "the file has no `default` variant; say which one with --variant" : "no variant `\(variantName)` in this file",
                           hint: (guess.map { "did you mean `\($0)`? " } ?? "") + "variants: \(names.joined(separator: ", "))")
                return
            }
            guard let variant = vValue.mapping(allowed: nil) else { return }
            for other in variants.entries where other.key != variantName {
                skip(other.value, other.value.path, "another variant" + ((other.value.mapping(allowed: nil)?["model_id"]?.node.scalar?.string).map { " (\($0))" } ?? "") + "; import it with --variant \(other.key)")
            }
            var modelID: Located<String>?
            if let id = variant["model_id"], let s = id.string() { modelID = Located(value: s, at: id.location, key: id.path) }
            else if let baseID { modelID = Located(value: baseID, at: model["model_id"]?.location, key: "model.model_id") }
            if let m = modelID, !m.value.matchesWhole("[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*") {
                sink.error(nil, m.key, "`\(m.value)` is not a Hugging Face repo id (ORG/NAME)")
            }
            if let v = variant["min_vllm_version"], let t = v.string() {
                if let parsed = Self.version(t) {
                    if minVersion.map({ parsed > $0.value }) ?? true { minVersion = Located(value: parsed, at: v.location, key: v.path) }
                } else { sink.error(v.node, v.path, "`\(t)` is not a version like 0.17.1") }
            }
            var precision: Located<String>?
            if let p = variant["precision"], let s = p.string() { precision = Located(value: s, at: p.location, key: p.path) }
            let defaultModes = variant["default_modes"]?.mapping(allowed: nil)
            if let vram = variant["vram_minimum_gb"]?.node.scalar.flatMap({ Int($0.string) }), let profile = HardwareProfile.known[hw],
               vram > sel.nodes * profile.memoryGiB {
                notes.append("\(variant["vram_minimum_gb"]!.path) is \(vram) GB, more than the \(sel.nodes) × \(profile.memoryGiB) GB of \(sel.nodes) \(hw) nodes: `sous fit` will say whether it fits")
            }

            // strategy: the inventory's nodes decide it (sous runs tensor parallel over every GPU of every node)
            let strategy = sel.nodes > 1 ? "multi_node_tp" : "single_node_tp"
            let tp = sel.nodes * sel.gpusPerNode
            consumed.formUnion(["compatible_strategies", "strategy_hardware", "strategy_overrides", "strategy_min_gpus", "default_strategy"])
            let compatible = (top["compatible_strategies"]?.sequence() ?? []).compactMap { $0.string() }
            var supported = compatible.contains(strategy)
            if let sh = top["strategy_hardware"]?.mapping(allowed: nil)?[strategy]?.mapping(allowed: nil),
               let state = Self.hardwareKeyed(sh, hw: hw, gen: gen, brand: brand)?.string() {
                supported = state == "supported"
            }
            if !supported {
                notes.append("vllm-project/recipes does not offer \(strategy) for this model on \(hw) (compatible_strategies\(top["compatible_strategies"]?.location.map { " at line \($0.line)" } ?? "")): \(sel.nodes) node\(sel.nodes == 1 ? "" : "s") × \(sel.gpusPerNode) GPU needs it")
            }
            if let t = variant["tp"] { skip(t, t.path, "the single-node tensor-parallel size; sous runs \(strategy) with tensor_parallel_size \(tp) (the inventory's GPUs)") }
            if let sm = top["strategy_min_gpus"] {
                let need = sm.node.scalar.flatMap { Int($0.string) } ?? sm.mapping(allowed: nil)?[strategy]?.node.scalar.flatMap { Int($0.string) }
                if let need, need > tp { notes.append("vllm-project/recipes asks for at least \(need) GPUs for \(strategy) (strategy_min_gpus, line \(sm.location?.line ?? 0)); the inventory has \(tp)") }
            }
            let strategyOverrides = top["strategy_overrides"]?.mapping(allowed: nil)
            for entry in strategyOverrides?.entries ?? [] where entry.key != strategy {
                skip(entry.value, entry.value.path, "for another serving strategy (sous runs \(strategy))")
            }
            let so = strategyOverrides?[strategy]?.mapping(allowed: nil)

            // hardware overrides
            consumed.insert("hardware_overrides")
            let recipeHO = top["hardware_overrides"]?.mapping(allowed: nil)
            let variantHO = variant["hardware_overrides"]?.mapping(allowed: nil)
            let strategyHOs = so?["hardware_overrides"]?.mapping(allowed: nil)
            func genBlock(_ m: YMap?) -> YValue? { m?[gen] ?? (brand == "nvidia" ? m?["nvidia"] : nil) }
            let strategyGen = genBlock(strategyHOs)
            var applied: [String] = []

            // args, in the site's order
            let base = model["base_args"]
            argList(base, hardware: false, viaGeneration: false)
            env(model["base_env"], hardware: false, viaGeneration: false)
            argList(variant["extra_args"], hardware: false, viaGeneration: false)
            env(variant["extra_env"], hardware: false, viaGeneration: false)
            if let exact = variantHO?[hw] { overrideBlock(exact, viaGeneration: false); applied.append(exact.path) }
            if let so {
                argList(so["extra_args"], hardware: false, viaGeneration: false)
                argList(so["vllm_args"], hardware: false, viaGeneration: false)
                env(so["env"], hardware: false, viaGeneration: false)
                env(so["extra_env"], hardware: false, viaGeneration: false)
                for entry in so.entries where !["extra_args", "vllm_args", "env", "extra_env", "hardware_overrides"].contains(entry.key) {
                    skip(entry.value, entry.value.path, "not a setting sous models for \(strategy)")
                }
            }
            if let strategyGen {
                overrideBlock(strategyGen, viaGeneration: true); applied.append(strategyGen.path)
                for b in [genBlock(recipeHO), genBlock(variantHO)].compactMap({ $0 }) {
                    skip(b, b.path, "replaced by \(strategyGen.path), as on the site"); applied.append(b.path)
                }
            } else {
                for b in [genBlock(recipeHO), genBlock(variantHO)].compactMap({ $0 }) { overrideBlock(b, viaGeneration: true); applied.append(b.path) }
            }
            if let exact = strategyHOs?[hw] { overrideBlock(exact, viaGeneration: false); applied.append(exact.path) }
            // A recipe-level block keyed by the profile itself: the site reads exact ids only in variants and
            // strategy overrides, but the format's authors write them here too; sous applies it last.
            if let exact = recipeHO?[hw] { overrideBlock(exact, viaGeneration: false); applied.append(exact.path) }
            for m in [recipeHO, variantHO, strategyHOs].compactMap({ $0 }) {
                for entry in m.entries where !applied.contains(entry.value.path) {
                    skip(entry.value, entry.value.path, entry.key == "nvidia" && m[gen] != nil
                         ? "the brand-wide block yields to the \(gen) block, as on the site" : "not \(hw) (\(brand.uppercased()) \(gen))")
                }
            }
            exactConflicts(variantHO?[hw], recipeHO?[hw])

            // features: the default ones, the named ones
            var on: [String] = []
            for entry in features?.entries ?? [] {
                let name = entry.key
                let named = requested.first { $0.name == name }
                let isOptIn = optIn.contains(name) || hardwareOptIn.contains(name)
                let modeKey = named?.mode ?? (defaultModes?[name]?.node.scalar?.string)
                let autoOn = defaultModes?[name] != nil
                guard named != nil || !isOptIn || autoOn else {
                    skip(entry.value, entry.value.path, "opt-in; turn it on with --features \(name)")
                    continue
                }
                guard let f = entry.value.mapping(allowed: nil) else { continue }
                if let allow = f["strategies"]?.sequence()?.compactMap({ $0.string() }), !allow.contains(strategy) {
                    skip(entry.value, entry.value.path, "vllm-project/recipes offers it only with \(allow.joined(separator: ", ")), not \(strategy)")
                    continue
                }
                if let gate = f["hardware"]?.mapping(allowed: nil), Self.hardwareKeyed(gate, hw: hw, gen: gen, brand: brand)?.node.scalar?.string == "unsupported" {
                    skip(entry.value, entry.value.path, "marked unsupported on \(hw)")
                    continue
                }
                if let companion = f["companion"] { skip(companion, companion.path, "a helper process beside vllm serve: sous does not start it") }
                if let modes = f["modes"]?.mapping(allowed: nil) {
                    let modeNames = modes.entries.map(\.key)
                    let pick = modeKey ?? f["default_mode"]?.node.scalar?.string ?? modeNames.first
                    guard let pick, let mode = modes[pick]?.mapping(allowed: nil) else {
                        sink.error(modes.node, modes.path + ".\(modeKey ?? "")", "no mode `\(modeKey ?? "")` in feature \(name)",
                                   hint: "modes: \(modeNames.joined(separator: ", ")) (--features \(name):MODE)")
                        continue
                    }
                    let modeArgs = mode["hardware_overrides"]?.mapping(allowed: nil).flatMap { Self.hardwareKeyed($0, hw: hw, gen: gen, brand: brand)?.mapping(allowed: nil)?["args"] }
                    argList(modeArgs ?? mode["args"], hardware: modeArgs != nil, viaGeneration: false)
                    on.append("\(name):\(pick)")
                    for other in modes.entries where other.key != pick { skip(other.value, other.value.path, "another mode of \(name); pick it with --features \(name):\(other.key)") }
                } else {
                    let featHO = genBlock(f["hardware_overrides"]?.mapping(allowed: nil))?.mapping(allowed: nil)?["args"]
                    argList(featHO ?? f["args"], hardware: featHO != nil, viaGeneration: featHO != nil)
                    on.append(name)
                }
            }

            // the rest of the file
            consumed.formUnion(["meta", "guide"])
            for (i, dep) in (top["dependencies"]?.sequence() ?? []).enumerated() {
                let m = dep.mapping(allowed: nil)
                let command = m?["command"]?.node.scalar?.string ?? "?"
                skip(dep, "dependencies[\(i)]", "an install step (`\(command.escapingControls)`\(m?["optional"]?.node.scalar?.string == "true" ? ", optional" : "")): sous runs the pinned image as it is")
            }
            consumed.insert("dependencies")
            for entry in top.entries where !consumed.contains(entry.key) {
                skip(entry.value, entry.key, "not a setting sous models")
            }

            guard let modelID, let minVersion else { return }
            result = Resolved(file: file, model: modelID, minVersion: minVersion, contextLength: context, precision: precision,
                              variant: variantName, variantNames: names, hardware: hw, brand: brand, generation: gen, strategy: strategy,
                              tensorParallelSize: tp, features: on, args: args, env: env, excluded: excluded, skipped: skipped,
                              featuresAt: (top.entries.first { $0.key == "features" }?.keyNode).flatMap(sink.location) ?? sink.location(top.node), notes: notes)
        }

        mutating func unknownFeature(_ name: String, at node: Node, features: YMap?, from: String) {
            let names = features?.entries.map(\.key) ?? []
            let guess = didYouMean(name, in: names)
            sink.error(node, from == "--features" ? "features.\(name)" : from, "unknown feature `\(name)`" + (from == "--features" ? " (named in --features)" : ""),
                       hint: (guess.map { "did you mean `\($0)`? " } ?? "") + (names.isEmpty ? "the file has no features" : "features: \(names.joined(separator: ", "))"))
        }

        /// A `hardware_overrides.<key>` block: `extra_args`, `extra_env`; the rest is listed.
        mutating func overrideBlock(_ block: YValue, viaGeneration: Bool) {
            guard let m = block.mapping(allowed: nil) else { return }
            argList(m["extra_args"], hardware: true, viaGeneration: viaGeneration)
            env(m["extra_env"], hardware: true, viaGeneration: viaGeneration)
            for entry in m.entries where !["extra_args", "extra_env"].contains(entry.key) {
                skip(entry.value, entry.value.path, entry.key == "docker_image" ? "an image for the site's Docker tab: the inventory pins the image sous runs" : "not a setting sous models")
            }
        }

        /// The arguments of a list, as the site pairs them (a token starting with `-` takes the next one as its
        /// value unless that one starts with `-` too; command-synthesis.js dedupeArgs), with `--flag=value` split
        /// as vLLM's argparse reads it and a negative number taken as a value. Two values for one flag in one
        /// block, or a flag and its `--no-` form, are a conflict: the block does not say which it means.
        mutating func argList(_ list: YValue?, hardware: Bool, viaGeneration: Bool) {
            guard let list, !list.isNull, let items = list.sequence() else { return }
            let tokens: [(String, YValue)] = items.compactMap { item in item.string().map { ($0, item) } }
            var i = 0
            var block: [(flag: String, value: String?, item: YValue)] = []
            func isFlag(_ t: String) -> Bool { t.hasPrefix("-") && !t.matchesWhole("-[0-9.]+") }
            while i < tokens.count {
                let (t, item) = tokens[i]
                guard isFlag(t) else {
                    skip(item, item.path, "`\(t)` is a value with no flag before it")
                    i += 1
                    continue
                }
                var flag = t, value: String?
                if let eq = t.firstIndex(of: "=") {
                    flag = String(t[..<eq]); value = String(t[t.index(after: eq)...]); i += 1
                } else if i + 1 < tokens.count, !isFlag(tokens[i + 1].0) {
                    value = tokens[i + 1].0; i += 2
                } else { i += 1 }
                let canonical = Self.canonical(flag)
                let negation = canonical.hasPrefix("--no-") ? "--" + canonical.dropFirst(5) : "--no-" + canonical.dropFirst(2)
                if let earlier = block.first(where: { ($0.flag == canonical && $0.value != value) || $0.flag == negation }) {
                    sink.error(item.node, item.path, "\(t)\(value.map { " \($0)" } ?? "") conflicts with \(earlier.flag)\(earlier.value.map { " \($0)" } ?? "") at line \(earlier.item.location?.line ?? 0) of the same \(hardware ? "hardware override" : "list")",
                               hint: "keep one of them in \(list.path)")
                }
                block.append((canonical, value, item))
                args.append(Arg(flag: canonical, value: value, at: item.location, layer: list.path, hardware: hardware, viaGeneration: viaGeneration))
            }
        }

        mutating func env(_ map: YValue?, hardware: Bool, viaGeneration: Bool) {
            guard let map, !map.isNull, let m = map.mapping(allowed: nil) else { return }
            for entry in m.entries {
                guard let value = entry.value.string() else { continue }
                let e = Env(name: entry.key, value: value, at: entry.value.location, layer: map.path, hardware: hardware, viaGeneration: viaGeneration)
                if viaGeneration, let ex = VLLMRecipes.exclusions.first(where: { $0.hardware == sel.hardware && $0.env == entry.key }) {
                    excluded.append((e, ex.reason))
                    skip(entry.value, entry.value.path, "left out on \(sel.hardware): \(ex.reason)")
                    continue
                }
                self.env.append(e)
            }
        }

        /// The profile's own blocks in the variant and at the top both apply; where they disagree the file does not
        /// say which it means.
        func exactConflicts(_ a: YValue?, _ b: YValue?) {
            guard let a = a?.mapping(allowed: nil), let b = b?.mapping(allowed: nil) else { return }
            let ea = a["extra_env"]?.mapping(allowed: nil)?.entries ?? [], eb = b["extra_env"]?.mapping(allowed: nil)?.entries ?? []
            for x in eb {
                if let y = ea.first(where: { $0.key == x.key }), let vx = x.value.node.scalar?.string, let vy = y.value.node.scalar?.string, vx != vy {
                    sink.error(x.value.node, x.value.path, "\(x.key)=\(vx) conflicts with \(x.key)=\(vy) in \(y.value.path) (line \(y.value.location?.line ?? 0)): both apply to \(sel.hardware)",
                               hint: "keep one value for \(sel.hardware)")
                }
            }
            func units(_ m: YMap) -> [(String, String?, YValue)] {
                let t = (m["extra_args"]?.sequence() ?? []).compactMap { v in v.node.scalar.map { ($0.string, v) } }
                var out: [(String, String?, YValue)] = [], i = 0
                while i < t.count {
                    let (f, v) = t[i]
                    if f.hasPrefix("-"), let eq = f.firstIndex(of: "=") { out.append((Self.canonical(String(f[..<eq])), String(f[f.index(after: eq)...]), v)); i += 1 }
                    else if f.hasPrefix("-"), i + 1 < t.count, !t[i + 1].0.hasPrefix("-") { out.append((Self.canonical(f), t[i + 1].0, v)); i += 2 }
                    else { if f.hasPrefix("-") { out.append((Self.canonical(f), nil, v)) }; i += 1 }
                }
                return out
            }
            let ua = units(a)
            for (flag, value, node) in units(b) {
                if let other = ua.first(where: { $0.0 == flag && $0.1 != value }) {
                    sink.error(node.node, node.path, "\(flag)\(value.map { " \($0)" } ?? "") conflicts with \(flag)\(other.1.map { " \($0)" } ?? "") in \(other.2.path) (line \(other.2.location?.line ?? 0)): both apply to \(sel.hardware)",
                               hint: "keep one value for \(sel.hardware)")
                }
            }
        }

        /// vLLM's short spellings as their long flags.
        static func canonical(_ flag: String) -> String {
            ["-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size", "-dp": "--data-parallel-size", "-q": "--quantization"][flag] ?? flag
        }

        /// `0.10.1.1` reads as 0.10.1 (the site's versions sometimes carry a fourth part).
        static func version(_ text: String) -> VLLMVersion? {
            VLLMVersion(text) ?? VLLMVersion(text.split(separator: ".").prefix(3).joined(separator: "."))
        }

        /// A map keyed by exact GPU id, generation, brand or `default`, the first present wins
        /// (command-synthesis.js hardwareKeyedValue, lines 48–56).
        static func hardwareKeyed(_ m: YMap, hw: String, gen: String, brand: String) -> YValue? {
            m[hw] ?? m[gen] ?? m[brand] ?? m["default"]
        }
    }
}
