import Foundation
import Testing
@testable import SousKit

/// Known-bad flag combinations: refused by render, plan and up unless --force, reported by audit when they run.
@Suite struct KnownBadTests {
    /// The seed's recipe with MTP speculative decoding added, as vllm-project/recipes' DGX Spark command has it.
    func mtpRecipe(_ extra: String = "") throws -> String {
        let text = try String(contentsOfFile: repoPath("recipes/nemotron-3-super-nvfp4.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "      mamba_ssm_cache_dtype: float32", with: """
                      mamba_ssm_cache_dtype: float32
                      speculative_config: '{"method": "nemotron_h_mtp", "num_speculative_tokens": 3}'
                \(extra)
                """)
        let path = NSTemporaryDirectory() + "sous-mtp-\(UUID().uuidString.prefix(8)).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func matches(_ recipe: String, image: String = "vllm/vllm-openai:v0.28.0") throws -> [String] {
        let d = try Deployment.load(recipe: recipe, inventory: repoPath("inventory/two-sparks.yaml"))
        let d2 = try Deployment.make(recipe: d.recipe, inventory: d.inventory, image: image)
        return KnownBad.matches(serveArgv: try Renderer(d2).nodes()[0].serveArgv, version: d2.inventory.vllmVersion).map(\.id)
    }

    @Test func mtpWithPrefixCachingOnAHybridModelMatches() throws {
        #expect(try matches(try mtpRecipe()) == ["mtp-prefix-caching-hybrid"])
        #expect(try matches(try mtpRecipe(), image: "vllm/vllm-openai:v0.24.0") == ["mtp-prefix-caching-hybrid"])
        // Prefix caching off is the fix the rule names.
        #expect(try matches(try mtpRecipe("      no_enable_prefix_caching: true")) == [])
        // Without MTP, or on a model that is not hybrid, nothing.
        #expect(try matches(repoPath("recipes/nemotron-3-super-nvfp4.yaml")) == [])
        for f in shippedFiles("recipes") { #expect(try matches(repoPath("recipes/\(f)")) == [], "\(f)") }
        let rule = try #require(KnownBad.rules.first)
        #expect(rule.applies(to: VLLMVersion(0, 33, 0)) && !rule.applies(to: VLLMVersion(0, 10, 0)))
        #expect(rule.sources.contains("vllm#43559"))
    }

    @Test func renderAndPlanRefuseUnlessForced() throws {
        let recipe = try mtpRecipe()
        for command in ["render", "plan"] {
            let refused = try sous([command, "-r", recipe, "-i", "inventory/two-sparks.yaml"])
            #expect(refused.status == 2, "\(command): \(refused.err)")
            #expect(refused.err.contains("mtp-prefix-caching-hybrid: speculative decoding (MTP) with prefix caching on a hybrid Mamba model"), "\(refused.err)")
            #expect(refused.err.contains("hint: change the recipe as the fix says, or pass --force"), "\(refused.err)")
            let forced = try sous([command, "-r", recipe, "-i", "inventory/two-sparks.yaml", "--force"])
            #expect(forced.status == 0, "\(forced.err)")
            #expect(forced.err.contains("warning: known-bad combination, going on because of --force"), "\(forced.err)")
        }
    }

    @Test func auditReportsAKnownBadCombinationThatRuns() throws {
        let d = try Deployment.load(recipe: "recipes/nemotron-3-super-nvfp4.yaml", inventory: "inventory/two-sparks.yaml", relativeTo: repoRoot)
        let c = try Renderer(d).nodes()[0]
        let args = c.serveArgv + ["--speculative-config", #"{"method": "mtp", "num_speculative_tokens": 1}"#]
        let env = c.env.map { ($0.name, { if case .plain(let v) = $0 { return v } else { return "secret" } }($0.value)) }
        let r = RunningNode(node: c.node, running: true, imageRef: d.inventory.image, imageID: "sha256:abc", args: args, env: env, checkpointQuantization: nil)
        let drifts = Audit.compare(expected: c, running: r, deployment: d).filter { $0.kind == .drift }.map(\.text)
        #expect(drifts.contains { $0.hasPrefix("known-bad: mtp-prefix-caching-hybrid:") }, "\(drifts)")
    }
}

/// What an image bump changes for a recipe and its clients, read from the parser registries and the field table.
@Suite struct ReleaseChangesTests {
    func recipe(_ name: String) throws -> Recipe { try RecipeReader.load(path: repoPath("recipes/\(name).yaml")).0 }

    @Test func aParserWhoseClassChangesIsNamedWithItsNewAliases() throws {
        let changes = ReleaseChanges.between(VLLMVersion(0, 21, 0), VLLMVersion(0, 24, 0), recipe: try recipe("qwen3-coder-30b-a3b-fp8"))
        #expect(changes == ["the tool-call parser `qwen3_coder` is Qwen3CoderToolParser in vLLM 0.21.0 and Qwen3EngineToolParser in 0.24.0 (also registered there as `mimo`, `qwen3_xml`) (the parser registries of both wheels): the gate checks its calls again"])
        // The same release, or two with the same classes: nothing to say.
        #expect(ReleaseChanges.between(VLLMVersion(0, 24, 0), VLLMVersion(0, 25, 0), recipe: try recipe("qwen3-coder-30b-a3b-fp8")).isEmpty)
        #expect(ReleaseChanges.between(nil, VLLMVersion(0, 24, 0), recipe: try recipe("qwen3-coder-30b-a3b-fp8")).isEmpty)
    }

    @Test func crossingTheReasoningRenameTellsClients() throws {
        let changes = ReleaseChanges.between(VLLMVersion(0, 15, 0), VLLMVersion(0, 28, 0), recipe: try recipe("qwen3-30b-a3b-thinking-fp8"))
        #expect(changes.contains { $0.hasPrefix("reasoning moves from `reasoning_content` to `reasoning` in responses (vLLM 0.17.0; RFC vllm#27755") }, "\(changes)")
        // Back the other way too; and a recipe without reasoning has no field to move.
        #expect(ReleaseChanges.between(VLLMVersion(0, 28, 0), VLLMVersion(0, 15, 0), recipe: try recipe("qwen3-30b-a3b-thinking-fp8")).contains { $0.hasPrefix("reasoning moves from `reasoning` to `reasoning_content`") })
        #expect(!ReleaseChanges.between(VLLMVersion(0, 15, 0), VLLMVersion(0, 28, 0), recipe: try recipe("qwen3-coder-30b-a3b-fp8")).contains { $0.contains("reasoning moves") })
        #expect(ReleaseChanges.reasoningField(VLLMVersion(0, 16, 9)).name == "reasoning_content" && ReleaseChanges.reasoningField(nil).name == "reasoning")
    }
}

extension ReleaseChangesTests {
    /// A parser a release dropped: its new name when the class lives on, else the last release that had it.
    @Test func aParserAReleaseDroppedSaysWhereItWent() {
        let catalog = ParserCatalog.builtin
        #expect(catalog.fate(of: "minimax", kind: .toolCall, version: VLLMVersion(0, 24, 0)) == "vLLM 0.21.0 was the last release sous knows with `minimax` (MinimaxToolParser); 0.24.0 has no such parser")
        #expect(catalog.fate(of: "minimax", kind: .toolCall, version: VLLMVersion(0, 21, 0)) == nil, "still there")
        #expect(catalog.fate(of: "qwen3_coder", kind: .toolCall, version: VLLMVersion(0, 28, 0)) == nil)
        let renamed = ParserCatalog(releases: [
            .init(version: VLLMVersion(0, 1, 0), toolCallParsers: ["old_name": "SomeToolParser"], reasoningParsers: [:], systemFingerprint: false),
            .init(version: VLLMVersion(0, 2, 0), toolCallParsers: ["new_name": "SomeToolParser"], reasoningParsers: [:], systemFingerprint: false),
        ])
        #expect(renamed.fate(of: "old_name", kind: .toolCall, version: VLLMVersion(0, 2, 0)) == "`old_name` (SomeToolParser) is registered as `new_name` in vLLM 0.2.0")
    }
}
