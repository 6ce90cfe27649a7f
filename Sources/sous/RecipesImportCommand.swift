import ArgumentParser
import Foundation
import SousKit

/// Options shared by `recipes import` and `recipes diff`: which variant, hardware and features of the file.
struct UpstreamSelection: ParsableArguments {
    @Option(help: "The file's variant (default: `default`; for diff, the one whose checkpoint is the recipe's model).")
    var variant: String?

    @Option(help: "Hardware profile (default: the inventory's, else dgx_spark_gb10).")
    var hardware: String?

    @Option(help: ArgumentHelp("Opt-in features to turn on besides the default ones, comma-separated (NAME or NAME:MODE).", valueName: "a,b"))
    var features: String?

    @Option(name: [.customShort("i"), .long], help: "Inventory: the nodes (tensor-parallel size) and the image (vLLM version for the parser check).")
    var inventory: String?

    @Option(name: .customLong("vllm"), help: "Check parsers against this vLLM release (default: the inventory image's).")
    var version: String?

    func featureList() throws -> [String] {
        let list = (features ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for f in list where f.range(of: #"\A[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?\z"#, options: .regularExpression) == nil {
            throw UsageError("--features: `\(f.escapingControlsForCLI)` is not a feature name", hint: "names as the file's `features:` writes them, comma-separated, e.g. --features spec_decoding")
        }
        return list
    }

    func vllmVersion(_ inv: Inventory?) throws -> VLLMVersion? {
        guard let version else { return inv?.vllmVersion }
        guard let v = VLLMVersion(version) else { throw UsageError("--vllm: `\(version.escapingControlsForCLI)` is not a version like 0.24.0") }
        return v
    }

    func loadInventory() throws -> Inventory? {
        guard let inventory else { return nil }
        let (inv, warnings) = try InventoryReader.load(path: inventory)
        Console.warnings(warnings)
        return inv
    }
}

struct RecipesImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "A sous recipe from a vllm-project/recipes model file, each value with a comment naming its source.",
        discussion: """
        Reads models/<org>/<model>.yaml as vllm-project/recipes writes it and resolves it as its site does for one \
        variant, the hardware profile and the strategy the inventory implies (multi_node_tp over every GPU): model id, \
        min vLLM, max_model_len (context_length, or a --max-model-len the file passes), parsers from the features, \
        KV dtype and engine flags, env. Flags sous renders itself (host, port, served name, tensor parallel size, node \
        flags) are not copied; other long flags go to extra_args, values from hardware overrides under hardware.<profile>. \
        Sampling and the client output budget come from the checkpoint's generation_config.json (--checkpoint DIR, else \
        the local Hugging Face cache); without one they are left for you, and the recipe says so. Parsers are checked \
        against the image's vLLM release. What could not be imported is listed at the top of the recipe. The result \
        passes `sous recipes`, and with --inventory, the checks of `sous render`; nothing is written when it does not.

        Example: sous recipes import models/openai/gpt-oss-120b.yaml -i inventory/two-sparks.yaml --write recipes/gpt-oss-120b.yaml
        """
    )

    @Argument(help: "A vllm-project/recipes model file, or a directory of them (every .yaml below it).")
    var source: String

    @OptionGroup var selection: UpstreamSelection

    @Option(help: "A local copy of the checkpoint (generation_config.json; config.json, hf_quant_config.json for the quantization note).")
    var checkpoint: String?

    @Option(help: "Write the recipe to this file (a directory when SOURCE is one); default: print it.")
    var write: String?

    @Flag(help: "Replace a file --write would overwrite.")
    var force = false

    func run() throws {
        let inventory = try selection.loadInventory()
        let version = try selection.vllmVersion(inventory)
        let features = try selection.featureList()
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else {
            throw UsageError("\(source) does not exist", hint: "pass a models/<org>/<model>.yaml file of vllm-project/recipes, or a directory of them")
        }
        let files = isDir.boolValue ? try Self.yamlFiles(under: source) : [source]
        if isDir.boolValue, files.isEmpty { throw UsageError("no .yaml files under \(source)") }
        var writeDir: String?
        if let write, isDir.boolValue {
            var d: ObjCBool = false
            if FileManager.default.fileExists(atPath: write, isDirectory: &d), !d.boolValue {
                throw UsageError("--write \(write): importing a directory writes one recipe per file, so --write takes a directory")
            }
            writeDir = write
        }
        var results: [(RecipeImporter.Result, String?)] = []
        var issues: [ConfigIssue] = []
        for file in files {
            var o = RecipeImporter.Options(path: file, outputFile: "")
            o.variant = selection.variant
            o.hardware = selection.hardware
            o.features = features
            o.inventory = inventory
            o.vllm = version
            o.checkpoint = checkpoint
            var target: String?
            if let writeDir {
                o.outputFile = "(pending)"
                target = writeDir
            } else if let write {
                let stem = ((write as NSString).lastPathComponent as NSString).deletingPathExtension
                guard stem.range(of: #"\A[a-z0-9][a-z0-9._-]*\z"#, options: .regularExpression) != nil else {
                    throw UsageError("--write \(write): the file name is the recipe's name, so it must be lowercase letters, digits, '.', '_' or '-'")
                }
                o.name = stem
                o.outputFile = write
                target = write
            } else {
                o.outputFile = "(stdout)"
            }
            do {
                var r = try RecipeImporter.run(o)
                if let writeDir { target = "\(writeDir)/\(r.recipe.name).yaml"; r.recipe.file = target! }
                results.append((r, target))
            } catch {
                issues += error.issues
            }
        }
        if issues.contains(where: { $0.severity == .error }) { throw ConfigErrors(issues) }
        let targets = results.compactMap(\.1)
        if Set(targets).count != targets.count { throw UsageError("two files import to the same recipe name; import them one at a time with --write") }
        if !force, let existing = targets.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw UsageError("\(existing) exists; nothing was written", hint: "--force replaces it; `sous recipes diff \(existing) FILE` compares it with the vllm-project recipe")
        }
        for (r, target) in results {
            Console.warnings(r.warnings)
            guard let target else {
                if results.count > 1 { print("---") }
                print(r.text, terminator: "")
                continue
            }
            if let dir = writeDir { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            do {
                try Data(r.text.utf8).write(to: URL(fileURLWithPath: target), options: .atomic)
            } catch {
                throw UsageError("cannot write \(target): \(error.localizedDescription)")
            }
            let (n, m) = (r.values.settings.count, r.values.skipped.count)
            print("wrote \(target): \(r.recipe.model), \(n) setting\(n == 1 ? "" : "s") from the file's flags and env, \(m) thing\(m == 1 ? "" : "s") not imported (listed at its top)")
        }
    }

    /// Every .yaml/.yml below a directory, sorted (at most 10,000: a recipes checkout has a few hundred).
    static func yamlFiles(under dir: String) throws -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { throw UsageError("cannot list \(dir)") }
        var out: [String] = []
        while let p = e.nextObject() as? String {
            if p.hasSuffix(".yaml") || p.hasSuffix(".yml") { out.append(dir + "/" + p) }
            if out.count > 10_000 { throw UsageError("more than 10,000 .yaml files under \(dir): point at models/<org> or one file") }
        }
        return out.sorted()
    }
}

struct RecipesDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Where a sous recipe and a vllm-project recipe disagree: parsers, KV dtype, min version, flags, env.",
        discussion: """
        Compares on one hardware profile (the recipe's, or --hardware): the model, min_vllm_version, max_model_len, \
        both parsers (aliases of one parser on the vLLM release count as the same), kv_cache_dtype, trust_remote_code, \
        quantization, every extra flag and every environment variable, naming the file's line for each of its values. \
        The variant is the one whose checkpoint is the recipe's model unless --variant says. Exit 1 when they differ.

        Example: sous recipes diff nemotron-3-super-nvfp4 models/nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16.yaml
        """
    )

    @Argument(help: "A recipe file, or the name of one under recipes/.")
    var recipe: String

    @Argument(help: "A vllm-project/recipes model file.")
    var file: String

    @OptionGroup var selection: UpstreamSelection

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let inventory = try selection.loadInventory()
        let version = try selection.vllmVersion(inventory)
        let path = FileManager.default.fileExists(atPath: recipe) || recipe.contains("/") ? recipe : "recipes/\(recipe).yaml"
        let (r, warnings) = try RecipeReader.load(path: path)
        Console.warnings(warnings)
        let d = try RecipeDiffer.diff(recipe: r, path: file, variant: selection.variant, hardware: selection.hardware ?? inventory?.hardware,
                                      features: try selection.featureList(), version: version)
        print(json ? encodeJSON(d) : d.text, terminator: "")
        if d.differences > 0 { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}

extension String {
    /// Control characters shown as escapes, for messages that echo a command-line value.
    var escapingControlsForCLI: String {
        unicodeScalars.map { $0.properties.generalCategory == .control ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
    }
}
