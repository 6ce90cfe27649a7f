import Foundation

/// The OpenCode provider block the seed describes, merged into an existing opencode.json.
public enum OpenCodeConfig {
    public struct ServedModel: Sendable {
        public var id: String
        public var maxModelLen: Int?
        public init(id: String, maxModelLen: Int?) {
            self.id = id
            self.maxModelLen = maxModelLen
        }
    }

    public struct Problem: SousFailure {
        public var message: String
        public var hint: String?
        public var exitCode: ExitStatus { .checkFailed }
        public init(message: String, hint: String?) {
            self.message = message
            self.hint = hint
        }
    }

    /// Reads `data[].id` and `max_model_len` from a /v1/models answer.
    public static func servedModels(_ r: HTTPResponse) -> [ServedModel] {
        ((try? JSONSerialization.jsonObject(with: r.body) as? [String: Any])?["data"] as? [[String: Any]] ?? [])
            .compactMap { m in (m["id"] as? String).map { ServedModel(id: $0, maxModelLen: m["max_model_len"] as? Int) } }
    }

    /// The provider block for one served model of a recipe.
    public static func provider(name: String, baseURL: String, apiKeyEnv: String?, model: ServedModel, recipe: Recipe,
                                version: VLLMVersion?) throws -> [String: Any] {
        if let max = model.maxModelLen, recipe.clientContext >= max {
            throw Problem(message: "the server's max_model_len is \(max), but the recipe's client.context is \(recipe.clientContext)",
                          hint: "set client.context below \(max) in \(recipe.file): OpenCode packs prompts up to it")
        }
        var entry: [String: Any] = [
            "name": "\(model.id) (\(recipe.name))",
            "tool_call": true,
            "reasoning": recipe.reasoningParser != nil,
            "limit": ["context": recipe.clientContext, "output": recipe.clientOutput],
        ]
        if recipe.reasoningParser != nil {
            entry["interleaved"] = ["field": ReleaseChanges.reasoningField(version).name]
        }
        var options: [String: Any] = ["baseURL": baseURL]
        if let apiKeyEnv { options["apiKey"] = "{env:\(apiKeyEnv)}" }
        return ["npm": "@ai-sdk/openai-compatible", "name": name, "options": options, "models": [model.id: entry]]
    }

    /// Merges the provider into `existing` (other providers and settings kept) and sets the default model
    /// `provider/served-name` (a double slash when the served name has one).
    public static func merge(existing: [String: Any], providerID: String, provider: [String: Any], model: String) -> [String: Any] {
        var config = existing
        if config["$schema"] == nil { config["$schema"] = "https://opencode.ai/config.json" }
        var providers = config["provider"] as? [String: Any] ?? [:]
        providers[providerID] = provider
        config["provider"] = providers
        config["model"] = "\(providerID)/\(model)"
        return config
    }

    public static func json(_ config: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]), as: UTF8.self) + "\n"
    }
}
