import Foundation
import SousKit

/// The `vllm serve` flags the simulated engine understands, parsed the way vLLM's argparse does:
/// an unknown flag is an error at start; parser names are checked later, at engine start, against the
/// registry of the image's vLLM version (the same catalog the core validates recipes with).
public struct ServeArgs: Sendable, Equatable {
    public var model = ""
    public var servedModelName: String?
    public var host = "0.0.0.0"
    public var port = 8000
    public var tensorParallelSize = 1
    public var nnodes = 1
    public var nodeRank = 0
    public var masterAddr = "127.0.0.1"
    public var masterPort = 29501
    public var headless = false
    public var toolCallParser: String?
    public var enableAutoToolChoice = false
    public var reasoningParser: String?
    public var maxModelLen = 8192
    public var kvCacheDtype = "auto"
    public var gpuMemoryUtilization = 0.9
    public var quantization: String?
    public var distributedExecutorBackend: String?
    public var fingerprintMode = "full"
    public var other: [String: String] = [:]

    public var servedName: String { servedModelName ?? model }

    /// Flags taking a value that the sim accepts without modelling them.
    static let passThroughValue: Set<String> = ["revision", "max-num-seqs", "max-num-batched-tokens", "mamba-ssm-cache-dtype",
                                                "override-generation-config", "dtype", "load-format", "attention-backend",
                                                "generation-config", "tokenizer", "seed", "swap-space", "block-size",
                                                "mamba-cache-mode", "default-chat-template-kwargs", "chat-template",
                                                "speculative-config", "tool-parser-plugin", "fingerprint-value", "api-key",
                                                "uvicorn-log-level", "data-parallel-size", "pipeline-parallel-size", "config"]
    static let passThroughBare: Set<String> = ["trust-remote-code", "enable-chunked-prefill", "no-enable-chunked-prefill",
                                               "enable-prefix-caching", "no-enable-prefix-caching", "enforce-eager",
                                               "enable-expert-parallel", "disable-log-requests", "disable-log-stats"]

    public struct Unrecognized: Error, Equatable, CustomStringConvertible {
        public var arguments: [String]
        /// vLLM's argparse message.
        public var description: String { "vllm: error: unrecognized arguments: \(arguments.joined(separator: " "))" }
    }

    /// Parses `serve MODEL --flag value …` (the argv after the `vllm` entrypoint); `--config FILE` values
    /// are read from the YAML-like `key: value` lines of that file, command line winning.
    public static func parse(_ argv: [String], readFile: (String) -> String? = { try? String(contentsOfFile: $0, encoding: .utf8) }) throws -> ServeArgs {
        var a = ServeArgs()
        var args = argv
        if args.first == "serve" { args.removeFirst() }
        var unknown: [String] = []
        var pairs: [(String, String?)] = []
        var i = 0
        var positional: [String] = []
        while i < args.count {
            let t = args[i]
            if t.hasPrefix("--") {
                var name = String(t.dropFirst(2)), value: String?
                if let eq = name.firstIndex(of: "=") { value = String(name[name.index(after: eq)...]); name = String(name[..<eq]) }
                if value == nil, i + 1 < args.count, !args[i + 1].hasPrefix("--"), !isBare(name) { value = args[i + 1]; i += 1 }
                pairs.append((name, value))
            } else { positional.append(t) }
            i += 1
        }
        if let cfg = pairs.first(where: { $0.0 == "config" })?.1, let text = readFile(cfg) {
            var fromFile: [(String, String?)] = []
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let key = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
                var value = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                if value.hasPrefix("\""), let data = value.data(using: .utf8),
                   let s = try? JSONSerialization.jsonObject(with: Data("[\(String(decoding: data, as: UTF8.self))]".utf8)) as? [String] {
                    value = s[0]
                }
                if key == "model" { if positional.isEmpty { positional.append(value) }; continue }
                if value == "true" { fromFile.append((key, nil)) } else if value == "false" { fromFile.append(("no-\(key)", nil)) } else { fromFile.append((key, value)) }
            }
            pairs = fromFile + pairs
        }
        a.model = positional.first ?? ""
        if positional.count > 1 { unknown += positional.dropFirst() }
        for (name, value) in pairs {
            let v = value ?? ""
            switch name {
            case "served-model-name": a.servedModelName = v
            case "host": a.host = v
            case "port": a.port = Int(v) ?? a.port
            case "tensor-parallel-size": a.tensorParallelSize = Int(v) ?? 1
            case "nnodes": a.nnodes = Int(v) ?? 1
            case "node-rank": a.nodeRank = Int(v) ?? 0
            case "master-addr": a.masterAddr = v
            case "master-port": a.masterPort = Int(v) ?? a.masterPort
            case "headless": a.headless = true
            case "tool-call-parser": a.toolCallParser = v
            case "enable-auto-tool-choice": a.enableAutoToolChoice = true
            case "reasoning-parser": a.reasoningParser = v
            case "max-model-len": a.maxModelLen = Int(v) ?? a.maxModelLen
            case "kv-cache-dtype": a.kvCacheDtype = v
            case "gpu-memory-utilization": a.gpuMemoryUtilization = Double(v) ?? a.gpuMemoryUtilization
            case "quantization": a.quantization = v
            case "distributed-executor-backend": a.distributedExecutorBackend = v
            case "fingerprint-mode": a.fingerprintMode = v
            case let n where passThroughValue.contains(n): a.other[n] = v
            case let n where passThroughBare.contains(n): a.other[n] = "true"
            default: unknown.append("--\(name)" + (value.map { " \($0)" } ?? ""))
            }
        }
        if !unknown.isEmpty { throw Unrecognized(arguments: unknown) }
        return a
    }

    static func isBare(_ name: String) -> Bool {
        ["headless", "enable-auto-tool-choice"].contains(name) || passThroughBare.contains(name)
    }

    /// The checks vLLM makes on its parser flags, all before any weight is loaded (vLLM v0.28.0):
    /// - `--enable-auto-tool-choice` without `--tool-call-parser` fails right after argparse, on every rank
    ///   (entrypoints/openai/cli_args.py:422-423 `validate_parsed_serve_args`, called by cli/serve.py:154-155);
    /// - an unknown tool parser, with auto tool choice on, fails in the API server's `setup_server`
    ///   (entrypoints/openai/api_server.py:577-583); without auto tool choice the parser is never looked up
    ///   (parser/parser_manager.py:55-57), so a misspelt name passes and requests with tools get a 400 instead;
    /// - an unknown reasoning parser fails when the engine config is made, after the tokenizer is read and
    ///   before the weights (config/reasoning.py:79-86, reasoning/abs_reasoning_parsers.py:245-247).
    public func startupError(version: VLLMVersion) -> String? {
        let release = ParserCatalog.builtin.release(atOrBelow: version)
        if enableAutoToolChoice, toolCallParser == nil {
            return "TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser"
        }
        if enableAutoToolChoice, let t = toolCallParser, release.toolCallParsers[t] == nil, nodeRank == 0 {
            return "KeyError: 'invalid tool call parser: \(t) (chose from { \(release.toolCallParsers.keys.sorted().joined(separator: ",")) })'"
        }
        if let r = reasoningParser, release.reasoningParsers[r] == nil {
            return "KeyError: \"Reasoning parser '\(r)' not found. Available parsers: \(release.reasoningParsers.keys.sorted())\""
        }
        return nil
    }

    /// Tool calls are taken apart only with both flags (parser/parser_manager.py v0.28.0:55-57).
    public var parsesToolCalls: Bool { enableAutoToolChoice && toolCallParser != nil }
}
