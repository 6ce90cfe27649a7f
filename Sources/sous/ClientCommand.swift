import ArgumentParser
import Foundation
import SousKit

struct ClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "client", abstract: "Client configuration for coding agents.",
                                                    subcommands: [OpenCodeCommand.self])
}

struct OpenCodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "opencode",
        abstract: "The OpenCode provider block for the cluster, merged into opencode.json.",
        discussion: """
        Reads the served model names and max_model_len back from /v1/models (with the key), and writes the provider \
        the seed describes: npm @ai-sdk/openai-compatible, options.baseURL ending at /v1, options.apiKey \
        "{env:VAR}" (the key itself is never written), the model keyed exactly by its served name with limit.context \
        and limit.output from the recipe, reasoning / tool_call / interleaved. With --write, the provider is merged into \
        that file (other providers and settings kept) and the default model becomes provider/served-name.
        """
    )

    @OptionGroup var deployment: DeploymentOptions

    @Option(help: "opencode.json to merge into (created if missing); without it the result is printed.")
    var write: String?

    @Option(help: "Provider id (default: the cluster name).")
    var provider: String?

    @Option(help: "Base URL clients use (default: http://HEAD:PORT/v1), e.g. your reverse proxy.")
    var baseURL: String?

    @Flag(help: "Print JSON: the provider id, the default model, the file written (if any) and the provider block.")
    var json = false

    func run() async throws {
        let d = try deployment.load()
        let inv = d.inventory
        let base = baseURL ?? inv.baseURL + "/v1"
        guard base.hasSuffix("/v1") else { throw UsageError("--base-url must end at /v1 (the adapter appends /chat/completions)") }
        let key = try apiKey(inv)
        let r: HTTPResponse
        do { r = try await URLSessionProbe().get(inv.baseURL + "/v1/models", bearer: key, timeout: .seconds(10)) } catch {
            throw OpenCodeConfig.Problem(message: "cannot read /v1/models: \(error)", hint: "is the cluster up? sous up --recipe \(d.recipe.name) --inventory \(inv.file)")
        }
        if r.status == 401 { throw OpenCodeConfig.Problem(message: "/v1/models answered 401", hint: "export \(inv.apiKeyEnv ?? "VLLM_API_KEY") with the cluster's key") }
        guard let served = OpenCodeConfig.servedModels(r).first(where: { $0.id == d.recipe.servedModelName }) else {
            throw OpenCodeConfig.Problem(message: "the cluster does not serve `\(d.recipe.servedModelName)` (it serves \(OpenCodeConfig.servedModels(r).map(\.id).joined(separator: ", ")))",
                                         hint: "sous audit --recipe \(d.recipe.name) --inventory \(inv.file)")
        }
        let id = provider ?? inv.cluster
        let block = try OpenCodeConfig.provider(name: "Self-hosted vLLM (\(inv.cluster), tp\(d.recipe.tensorParallelSize))", baseURL: base,
                                                apiKeyEnv: inv.apiKeyEnv, model: served, recipe: d.recipe, version: inv.vllmVersion)
        var existing: [String: Any] = [:]
        if let write, let data = FileManager.default.contents(atPath: write), !data.isEmpty {
            guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw UsageError("\(write) is not a JSON object; sous will not overwrite it", hint: "fix or move it, then run again")
            }
            existing = obj
        }
        let text = OpenCodeConfig.json(OpenCodeConfig.merge(existing: existing, providerID: id, provider: block, model: served.id))
        func report(_ written: String?) -> String {
            OpenCodeConfig.json(["provider": id, "model": "\(id)/\(served.id)", "written": written ?? NSNull(), "provider_block": block])
        }
        guard let write else { print(json ? report(nil) : text, terminator: ""); return }
        let tmp = write + ".sous-tmp"
        try text.write(toFile: tmp, atomically: false, encoding: .utf8)
        _ = rename(tmp, write)
        if json { print(report(write), terminator: ""); return }
        print("wrote provider `\(id)` and model `\(id)/\(served.id)` to \(write); the key comes from $\(inv.apiKeyEnv ?? "VLLM_API_KEY") when OpenCode starts")
    }
}
