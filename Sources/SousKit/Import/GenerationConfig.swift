import Foundation

/// The sampling defaults and output length a checkpoint's `generation_config.json` declares.
public struct GenerationDefaults: Sendable {
    /// Where the file was read (a path).
    public var source: String
    /// In the order vLLM reads them: the keys of `available_params` in vLLM's ModelConfig.get_diff_sampling_param
    /// (vllm/config/model.py: repetition_penalty, temperature, top_k, top_p, min_p), as the recipe's `sampling`.
    public var sampling: [(key: String, value: Number)]
    /// `max_new_tokens` (vLLM reads it as the default max_tokens, same function).
    public var maxNewTokens: Int?
    /// Keys present but not usable, with why (a string where a number belongs, out of range, `do_sample: false`).
    public var ignored: [String]
}

public enum GenerationConfig {
    /// What sous looked for and where, for the comment that tells the user.
    public enum Lookup: Sendable {
        case found(GenerationDefaults)
        /// Not there; the text says where sous looked.
        case absent(String)
    }

    /// The sampling keys vLLM takes from generation_config.json, in its order (get_diff_sampling_param).
    static let keys = ["repetition_penalty", "temperature", "top_k", "top_p", "min_p"]
    /// A generation_config.json is a few hundred bytes; this is metadata from outside, so it is bounded.
    static let maxBytes = 1 << 20

    /// The one place that says where generation_config.json comes from: `checkpoint` (a local snapshot or a copy of
    /// its JSON files) when given, else the local Hugging Face cache at the model's revision (`refs/main` when none).
    /// A download from the hub would go here too.
    public static func lookup(model: String, revision: String?, checkpoint: String?,
                              environment: [String: String] = ProcessInfo.processInfo.environment) -> Lookup {
        var path: String
        if let checkpoint {
            path = checkpoint + "/generation_config.json"
        } else {
            let hub = hubCache(environment)
            let repo = hub + "/models--" + model.replacingOccurrences(of: "/", with: "--")
            let rev = revision ?? "main"
            var commit = rev
            if !rev.matchesWhole("[0-9a-f]{40}") {
                guard let ref = read(repo + "/refs/" + rev, max: 128)?.trimmingCharacters(in: .whitespacesAndNewlines), ref.matchesWhole("[0-9a-f]{40}") else {
                    return .absent("\(model) is not in the local Hugging Face cache (\(hub))")
                }
                commit = ref
            }
            path = repo + "/snapshots/" + commit + "/generation_config.json"
        }
        guard let text = read(path, max: maxBytes) else { return .absent("no readable generation_config.json at \(path) (at most 1 MiB)") }
        guard let d = parse(text, source: path) else { return .absent("\(path) is not a JSON object") }
        return .found(d)
    }

    /// HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else
    /// ~/.cache/huggingface/hub (huggingface_hub constants.py: HF_HOME, default_cache_path, HF_HUB_CACHE).
    static func hubCache(_ env: [String: String]) -> String {
        func expand(_ p: String) -> String { (p as NSString).expandingTildeInPath }
        if let c = env["HF_HUB_CACHE"], !c.isEmpty { return expand(c) }
        if let c = env["HUGGINGFACE_HUB_CACHE"], !c.isEmpty { return expand(c) }
        let home = env["HF_HOME"].map(expand) ?? (env["XDG_CACHE_HOME"].map(expand) ?? (NSHomeDirectory() + "/.cache")) + "/huggingface"
        return home + "/hub"
    }

    static func read(_ path: String, max: Int) -> String? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        guard let data = try? h.read(upToCount: max + 1), data.count <= max else { return nil }
        return String(data: data, encoding: .utf8)
    }

    /// Reads the keys vLLM uses; anything else in the file is the checkpoint's business.
    public static func parse(_ text: String, source: String) -> GenerationDefaults? {
        guard let object = try? JSONDecoder().decode([String: Scalar].self, from: Data(text.utf8)) else { return nil }
        var sampling: [(String, Number)] = [], ignored: [String] = []
        func number(_ key: String) -> Double? {
            switch object[key] {
            case nil, .null?: return nil
            case .number(let d)?: return d
            case .bool?, .other?:
                ignored.append("\(key) is not a number")
                return nil
            }
        }
        let ranges: [String: ClosedRange<Double>] = ["repetition_penalty": 0.01...10, "temperature": 0...10, "top_k": -1...1_000_000, "top_p": 0.000_001...1, "min_p": 0...1]
        for key in keys {
            guard let v = number(key) else { continue }
            guard ranges[key]!.contains(v), key != "top_k" || v == v.rounded() else {
                ignored.append("\(key): \(v) is out of range")
                continue
            }
            let text = key == "top_k" ? String(Int(v)) : v == v.rounded() && abs(v) < 1e15 ? String(format: "%.1f", v) : "\(v)"
            sampling.append((key, Number(text: text, value: v)))
        }
        var maxNew: Int?
        if let v = number("max_new_tokens") {
            if v >= 1, v <= 100_000_000, v == v.rounded() { maxNew = Int(v) } else { ignored.append("max_new_tokens: \(v) is not a token count") }
        }
        if case .bool(false)? = object["do_sample"], !sampling.isEmpty {
            ignored.append("do_sample: false (transformers would decode greedily; vLLM ignores it and samples with these values)")
        }
        return GenerationDefaults(source: source, sampling: sampling, maxNewTokens: maxNew, ignored: ignored)
    }

    /// One value of the JSON object: numbers and booleans told apart (JSONDecoder does not turn one into the other).
    enum Scalar: Decodable {
        case bool(Bool), number(Double), null, other
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null } else if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let d = try? c.decode(Double.self), d.isFinite { self = .number(d) } else { self = .other }
        }
    }
}
