import ArgumentParser
import Foundation
import SousKit

struct RecipesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recipes",
        abstract: "List and check the recipes; import a vllm-project/recipes model file; diff a recipe against one.",
        discussion: """
        `sous recipes` (or `sous recipes list`) lists the recipes in a directory, checking each one.
        `sous recipes import FILE` turns a vllm-project/recipes model file (models/<org>/<model>.yaml) into a sous recipe.
        `sous recipes diff RECIPE FILE` shows where a sous recipe and a vllm-project recipe disagree.
        """,
        subcommands: [RecipesListCommand.self, RecipesImportCommand.self, RecipesDiffCommand.self],
        defaultSubcommand: RecipesListCommand.self
    )
}

struct RecipesListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the recipes in a directory (model, parsers, tensor parallel size), checking each one."
    )

    @Option(help: "Directory of recipe files.")
    var dir = "recipes"

    @Flag(help: "Print JSON.")
    var json = false

    struct Row: Encodable {
        var file: String, name: String, model: String, served_model_name: String
        var tool_call_parser: String, reasoning_parser: String?, quantization: String
        var tensor_parallel_size: Int, max_model_len: Int, min_vllm_version: String
    }

    func run() throws {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: dir)
                .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        } catch {
            throw UsageError("cannot list \(dir)", hint: "run sous from the repository root, or pass --dir")
        }
        var rows: [Row] = []
        var issues: [ConfigIssue] = []
        for f in files {
            do {
                let (r, warnings) = try RecipeReader.load(path: "\(dir)/\(f)")
                issues += warnings
                let q: String
                if case .method(let m, _) = r.quantization { q = m } else { q = "auto" }
                rows.append(Row(file: "\(dir)/\(f)", name: r.name, model: r.model, served_model_name: r.servedModelName,
                                tool_call_parser: r.toolCallParser, reasoning_parser: r.reasoningParser, quantization: q,
                                tensor_parallel_size: r.tensorParallelSize, max_model_len: r.engine.maxModelLen,
                                min_vllm_version: r.minVLLMVersion.description))
            } catch {
                issues += error.issues
            }
        }
        if json {
            print(encodeJSON(rows), terminator: "")
        } else {
            let header = ["NAME", "MODEL", "TOOL PARSER", "REASONING", "QUANT", "TP", "MAX LEN", "MIN VLLM"]
            let table = rows.map { [$0.name, $0.model, $0.tool_call_parser, $0.reasoning_parser ?? "-", $0.quantization,
                                    "\($0.tensor_parallel_size)", "\($0.max_model_len)", $0.min_vllm_version] }
            print(formatTable([header] + table), terminator: "")
        }
        if !issues.isEmpty {
            if issues.contains(where: { $0.severity == .error }) { throw ConfigErrors(issues) }
            Console.warnings(issues)
        }
    }
}

struct ParsersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parsers",
        abstract: "List the tool-call or reasoning parsers a vLLM version registers, with aliases.",
        discussion: "Example: sous parsers --kind tool-call --vllm 0.24.0"
    )

    enum Kind: String, ExpressibleByArgument, CaseIterable { case toolCall = "tool-call", reasoning }

    @Option(help: "tool-call or reasoning.")
    var kind: Kind = .toolCall

    @Option(name: .customLong("vllm"), help: "vLLM version (default: the newest sous knows).")
    var version: String?

    func run() throws {
        let catalog = ParserCatalog.builtin
        var v = catalog.releases.last!.version
        if let version {
            guard let parsed = VLLMVersion(version) else { throw UsageError("`\(version)` is not a version like 0.24.0") }
            v = parsed
        }
        let release = catalog.release(atOrBelow: v)
        let table = kind == .toolCall ? release.toolCallParsers : release.reasoningParsers
        var byClass: [String: [String]] = [:]
        for (name, cls) in table { byClass[cls, default: []].append(name) }
        print("vLLM \(release.version) — \(table.count) \(kind.rawValue) parsers (names on one line are aliases):")
        for names in byClass.values.map({ $0.sorted() }).sorted(by: { $0[0] < $1[0] }) {
            print("  " + names.joined(separator: " = "))
        }
    }
}

/// Left-aligned columns separated by two spaces.
func formatTable(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = [Int](repeating: 0, count: first.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    return rows.map { row in
        row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
}
