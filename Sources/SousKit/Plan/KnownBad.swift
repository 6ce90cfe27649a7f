import Foundation

/// Combinations of serve flags that vLLM releases are known to get wrong, kept as data: each rule names its sources
/// and the releases it applies to. `render`, `plan` and `up` refuse a matching deployment unless `--force`; `audit`
/// reports one that runs.
public struct KnownBadRule: Sendable {
    public let id: String
    public let problem: String
    public let sources: [String]
    /// The first release the rule applies to, and the first with the fix (nil: none known yet).
    public let from: VLLMVersion
    public let fixedIn: VLLMVersion?
    public let fix: String
    /// True when the serve flags (long names without `--`) have the combination.
    let matches: @Sendable (_ flags: [String: String?]) -> Bool

    public var releases: String { "vLLM \(from)" + (fixedIn.map { " up to before \($0)" } ?? " and later (no release with the fix is known)") }

    public func applies(to version: VLLMVersion?) -> Bool {
        guard let version else { return fixedIn == nil }
        return version >= from && fixedIn.map { version < $0 } ?? true
    }
}

public enum KnownBad {
    /// The rules, oldest first.
    public static let rules: [KnownBadRule] = [
        KnownBadRule(
            id: "mtp-prefix-caching-hybrid",
            problem: "speculative decoding (MTP) with prefix caching on a hybrid Mamba model corrupts multi-turn tool calls: cached Mamba state diverges under speculative verification",
            sources: ["vllm#43559", "vllm#47194", "vllm#53912 (still in 0.28.0)", "PR vllm#48375 (not in 0.28.0, vllm#53505)"],
            from: VLLMVersion(0, 11, 0), fixedIn: nil,
            fix: "drop speculative_config, or keep it and turn prefix caching off (extra_args: no_enable_prefix_caching: true)",
            matches: { flags in
                // Hybrid: the recipe sets a Mamba cache flag (Nemotron-H, Qwen3-Next and the like need one); prefix
                // caching is on unless turned off (vLLM V1's default).
                flags["speculative-config"] != nil && flags["no-enable-prefix-caching"] == nil
                    && flags.keys.contains { $0.hasPrefix("mamba-") }
            }),
    ]

    /// The rules a serve command (`serve MODEL --flag value …`) matches on `version`.
    public static func matches(serveArgv: [String], version: VLLMVersion?) -> [KnownBadRule] {
        let flags = Dictionary(Audit.flags(serveArgv).flags.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        return rules.filter { $0.applies(to: version) && $0.matches(flags) }
    }

    /// One rule as a person reads it.
    public static func describe(_ r: KnownBadRule) -> String {
        "\(r.id): \(r.problem) (\(r.releases); \(r.sources.joined(separator: ", "))); fix: \(r.fix)"
    }
}
