import Foundation

/// What an image bump changes in the contract a recipe and its clients rely on, as data: the parser class behind
/// each of the recipe's parser names (from the registries in `ParserCatalog`, read from each release's wheel), and
/// the response field that carries reasoning. `sous roll` reports them before it switches, and the result keeps them.
public enum ReleaseChanges {
    /// The field of a chat completion's message (and stream delta) that carries reasoning, by release.
    public struct ReasoningField: Sendable {
        public let name: String
        public let from: VLLMVersion
        public let sources: [String]
    }

    /// Oldest first. vLLM renamed `reasoning_content` to `reasoning` and then stopped sending the old name; requests
    /// still accept `reasoning_content` on input. OpenCode reads the field `interleaved.field` names.
    public static let reasoningFields: [ReasoningField] = [
        ReasoningField(name: "reasoning_content", from: VLLMVersion(0, 0, 0), sources: []),
        ReasoningField(name: "reasoning", from: VLLMVersion(0, 17, 0),
                       sources: ["RFC vllm#27755", "PR vllm#27752", "PR vllm#33402 (removal from output)", "PR vllm#42664 (input still accepted)",
                                 "OpenCode PR #30477 (interleaved.field \"reasoning\")"]),
    ]

    /// The reasoning field a release sends; the newest known when the version is unknown.
    public static func reasoningField(_ version: VLLMVersion?) -> ReasoningField {
        guard let version else { return reasoningFields[reasoningFields.count - 1] }
        return reasoningFields.last { $0.from <= version }!
    }

    /// What changes for `recipe` from release `old` to `new`, one sentence each; empty when nothing does.
    public static func between(_ old: VLLMVersion?, _ new: VLLMVersion?, recipe: Recipe, catalog: ParserCatalog = .builtin) -> [String] {
        guard let old, let new, old != new else { return [] }
        var out: [String] = []
        let a = catalog.release(atOrBelow: old), b = catalog.release(atOrBelow: new)
        for (kind, name) in [(ParserCatalog.Kind.toolCall, Optional(recipe.toolCallParser)), (.reasoning, recipe.reasoningParser)] {
            guard let name, a.version != b.version else { continue }
            let was = catalog.table(a, kind)[name], now = catalog.table(b, kind)[name]
            guard let was, let now, was != now else { continue }
            let aliases = catalog.table(b, kind).filter { $0.value == now && $0.key != name }.keys.sorted()
            out.append("the \(kind.rawValue) parser `\(name)` is \(was) in vLLM \(a.version) and \(now) in \(b.version)"
                       + (aliases.isEmpty ? "" : " (also registered there as \(aliases.map { "`\($0)`" }.joined(separator: ", ")))")
                       + " (the parser registries of both wheels): the gate checks its calls again")
        }
        let (fa, fb) = (reasoningField(old), reasoningField(new))
        if recipe.reasoningParser != nil, fa.name != fb.name {
            let latest = fa.from > fb.from ? fa : fb
            out.append("reasoning moves from `\(fa.name)` to `\(fb.name)` in responses (vLLM \(latest.from); \(latest.sources.joined(separator: ", "))): "
                       + "clients that read `\(fa.name)` must read `\(fb.name)`; `sous client opencode` writes interleaved.field for the new release")
        }
        return out
    }
}
