import Foundation
import Testing
@testable import SousKit

let goodRecipe = """
name: demo
model: org/demo-model
served_model_name: demo
source: https://huggingface.co/org/demo-model
min_vllm_version: 0.24.0
parsers:
  tool_call: qwen3_coder
  reasoning: nemotron_v3
quantization: auto
kv_cache_dtype: fp8
max_model_len: 65536
gpu_memory_utilization: 0.8
tensor_parallel_size: 2
client:
  context: 60000
  output: 4096

"""

let goodInventory = """
cluster: lab
image: vllm/vllm-openai:v0.24.0
hardware: dgx_spark_gb10
interconnect:
  interface: enp1s0f1np1
nodes:
  - name: a
    host: 10.0.0.1
    user: spark
    interconnect_ip: 192.168.100.10
  - name: b
    host: 10.0.0.2
    user: spark
    interconnect_ip: 192.168.100.11

"""

/// One error: its exact text (file:line:column: error: key: problem, then the hint).
func onlyError(_ issues: [ConfigIssue]) -> String {
    let errors = issues.filter { $0.severity == .error }
    #expect(errors.count == 1, "expected one error, got: \(issues.map(\.description))")
    return errors.first?.description ?? ""
}

@Suite struct RecipeValidationTests {
    @Test func goodRecipeHasNoIssues() {
        #expect(recipeIssues(goodRecipe).isEmpty)
    }

    @Test func unknownKeyWithDidYouMean() {
        let text = goodRecipe.replacingOccurrences(of: "max_model_len:", with: "max_modl_len:")
        let issues = recipeIssues(text).filter { $0.severity == .error }
        #expect(issues.map(\.description) == [
            "r.yaml:11:1: error: max_modl_len: unknown key\n  hint: did you mean `max_model_len`?",
            "r.yaml:1:1: error: max_model_len: missing required key",
        ])
    }

    @Test func misspelledParserNameSuggestsTheRealOne() {
        let text = goodRecipe.replacingOccurrences(of: "tool_call: qwen3_coder", with: "tool_call: qwen3_codr")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:7:14: error: parsers.tool_call: `qwen3_codr` is not a tool-call parser in any vLLM release sous knows (0.11.0–0.33.0)\n  hint: did you mean `qwen3_coder`?")
    }

    @Test func aRevisionMustBeACommitBranchOrTag() {
        #expect(recipeIssues(goodRecipe.replacingOccurrences(of: "model: org/demo-model\n", with: "model: org/demo-model\nrevision: 0123456789abcdef0123456789abcdef01234567\n")).isEmpty)
        let text = goodRecipe.replacingOccurrences(of: "model: org/demo-model\n", with: "model: org/demo-model\nrevision: ../../etc\n")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:3:11: error: revision: `../../etc` is not a commit hash, branch or tag name\n  hint: the 40-hex commit from the model's \"Files and versions\" page pins it best")
    }

    @Test func parserNewerThanMinVersion() {
        let text = goodRecipe.replacingOccurrences(of: "min_vllm_version: 0.24.0", with: "min_vllm_version: 0.11.0")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:8:14: error: parsers.reasoning: `nemotron_v3` first appears in vLLM 0.17.1, but min_vllm_version is 0.11.0\n  hint: raise min_vllm_version to 0.17.1")
    }

    @Test func clientContextMustStayBelowMaxModelLen() {
        let text = goodRecipe.replacingOccurrences(of: "context: 60000", with: "context: 65536")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:15:12: error: client.context: 65536 must stay below max_model_len (65536): agents pack prompts up to it and the server rejects them\n  hint: leave a margin for the output, e.g. 61440")
    }

    @Test func memoryFractionMustBeAFraction() {
        for bad in ["1.0", "0", "1.5", "-0.2"] {
            let text = goodRecipe.replacingOccurrences(of: "gpu_memory_utilization: 0.8", with: "gpu_memory_utilization: \(bad)")
            #expect(onlyError(recipeIssues(text)) ==
                "r.yaml:12:25: error: gpu_memory_utilization: \(bad) must be between 0 and 1 (exclusive): the fraction of GPU memory vLLM may take")
        }
    }

    @Test func explicitQuantizationNeedsAReason() {
        let text = goodRecipe.replacingOccurrences(of: "quantization: auto", with: "quantization: fp8")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:9:15: error: quantization: an explicit method needs quantization_reason (a pre-quantized checkpoint carries its own config and vLLM detects it)\n  hint: write `quantization: auto`, or add `quantization_reason:` quoting the model card")
        let withReason = text + "quantization_reason: the card says so\n"
        #expect(recipeIssues(withReason).isEmpty)
    }

    @Test func unknownQuantizationMethod() {
        let text = goodRecipe.replacingOccurrences(of: "quantization: auto", with: "quantization: fp4\nquantization_reason: x")
        #expect(onlyError(recipeIssues(text)) == "r.yaml:9:15: error: quantization: unknown method `fp4`\n  hint: did you mean `fp8`?")
    }

    @Test func extraArgsCannotOverrideManagedFlagsOrCarryTheKey() {
        let text = goodRecipe + "extra_args:\n  api_key: abc\n  max_num_seqs: 8\n"
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:18:3: error: extra_args.api_key: --api-key is rendered by sous from the inventory's api_key_env (the key never goes on a command line); remove it from extra_args")
    }

    @Test func gidIndexIsNeverPinned() {
        let text = goodRecipe + "env:\n  NCCL_IB_GID_INDEX: \"3\"\n"
        #expect(onlyError(recipeIssues(text)).hasPrefix("r.yaml:18:3: error: env.NCCL_IB_GID_INDEX: never pin NCCL_IB_GID_INDEX"))
    }

    @Test func wrongTypes() {
        let text = goodRecipe.replacingOccurrences(of: "tensor_parallel_size: 2", with: "tensor_parallel_size: two")
        #expect(onlyError(recipeIssues(text)) == "r.yaml:13:23: error: tensor_parallel_size: expected a whole number, found `two`")
    }

    @Test func malformedYAMLGivesPosition() {
        let issues = recipeIssues("name: demo\nparsers: [unclosed\n")
        #expect(issues.count == 1)
        #expect(issues[0].description.hasPrefix("r.yaml:3:1: error: not valid YAML:"))
    }

    @Test func unknownHardwareProfile() {
        let text = goodRecipe + "hardware:\n  dgx_spark:\n    gpu_memory_utilization: 0.7\n"
        #expect(onlyError(recipeIssues(text)) == "r.yaml:18:3: error: hardware.dgx_spark: unknown hardware profile\n  hint: known profiles: dgx_spark_gb10")
    }

    @Test func configErrorsExitTwo() {
        #expect(ConfigErrors([]).exitCode == .badInput)
        #expect(ExitStatus.badInput.rawValue == 2)
    }

    @Test func everyShippedRecipeLoadsWithoutWarnings() throws {
        for f in shippedFiles("recipes") {
            let (r, issues) = try RecipeReader.load(path: "recipes/\(f)", relativeTo: repoRoot)
            #expect(issues.isEmpty, "\(f): \(issues)")
            #expect(f == "\(r.name).yaml", "a recipe's file is named after it")
            #expect(r.clientContext < r.engine.maxModelLen)
        }
    }
}

@Suite struct InventoryValidationTests {
    @Test func goodInventory_() throws {
        let (inv, issues) = try InventoryReader.parse(goodInventory, file: "i.yaml")
        #expect(issues.isEmpty)
        #expect(inv.head.name == "a")
        #expect(inv.port == 8000 && inv.masterPort == 29501 && inv.apiKeyEnv == "VLLM_API_KEY" && inv.launcher == .mp)
        #expect(inv.vllmVersion == VLLMVersion(0, 24, 0))
    }

    @Test func unpinnedImageIsRejected() {
        let text = goodInventory.replacingOccurrences(of: "vllm/vllm-openai:v0.24.0", with: "vllm/vllm-openai:latest")
        #expect(onlyError(inventoryIssues(text)) ==
            "i.yaml:2:8: error: image: `vllm/vllm-openai:latest` is not pinned: two nodes pulling a moving tag can get different engines\n  hint: use an exact tag (vllm/vllm-openai:v0.24.0) or a digest (…@sha256:…)")
    }

    @Test func duplicateInterconnectAddress() {
        let text = goodInventory.replacingOccurrences(of: "192.168.100.11", with: "192.168.100.10")
        #expect(onlyError(inventoryIssues(text)) == "i.yaml: error: nodes[1].interconnect_ip: 192.168.100.10 is also the address of a")
    }

    @Test func twoHeads() {
        let text = goodInventory.replacingOccurrences(of: "    interconnect_ip: 192.168.100.11", with: "    interconnect_ip: 192.168.100.11\n    role: head")
        #expect(onlyError(inventoryIssues(text)) ==
            "i.yaml:1:1: error: nodes: exactly one node must have role head (found 2)\n  hint: the first node is the head unless another says `role: head`")
    }

    @Test func unknownNodeKey() {
        let text = goodInventory.replacingOccurrences(of: "    user: spark\n    interconnect_ip: 192.168.100.11", with: "    usr: spark\n    interconnect_ip: 192.168.100.11")
        let errors = inventoryIssues(text).filter { $0.severity == .error }.map(\.description)
        #expect(errors == ["i.yaml:13:5: error: nodes[1].usr: unknown key\n  hint: did you mean `user`?",
                           "i.yaml:11:5: error: nodes[1].user: missing required key (the login user (the same on every node))"])
    }

    @Test func hostileHostIsRejected() {
        let text = goodInventory.replacingOccurrences(of: "host: 10.0.0.2", with: "host: \"x; rm -rf /\"")
        #expect(onlyError(inventoryIssues(text)) == "i.yaml:12:11: error: nodes[1].host: `x; rm -rf /` is not a host name or address (put the user in `user:`)")
    }

    @Test func ansibleInventoryMatchesTheNativeOne() throws {
        let (native, _) = try InventoryReader.load(path: "inventory/two-sparks.yaml", relativeTo: repoRoot)
        let (ansible, issues) = try InventoryReader.load(path: "inventory/two-sparks.ansible.yaml", relativeTo: repoRoot)
        #expect(issues.isEmpty)
        #expect(ansible.nodes == native.nodes)
        #expect(ansible.image == native.image && ansible.interface == native.interface && ansible.ncclIbHca == native.ncclIbHca)
    }

    @Test func ansibleMisspelledSettingWarns() {
        let text = """
        all:
          vars:
            cluster: lab
            imag: vllm/vllm-openai:v0.24.0
            interconnect: {interface: eth1}
          hosts:
            a: {ansible_host: 10.0.0.1, ansible_user: u, interconnect_ip: 192.168.1.1}
        """
        let issues = inventoryIssues(text).map(\.description)
        #expect(issues.contains("i.yaml:4:5: warning: all.vars.imag: not a sous setting; did you mean `image`?"))
        #expect(issues.contains("i.yaml:2:3: error: all.vars.image: missing required key (a pinned tag or digest, e.g. vllm/vllm-openai:v0.24.0)"))
    }
}

@Suite struct DeploymentValidationTests {
    func pair(_ recipe: String, _ inventory: String) -> [ConfigIssue] {
        do {
            let r = try RecipeReader.parse(recipe, file: "r.yaml").0
            let i = try InventoryReader.parse(inventory, file: "i.yaml").0
            return try Deployment.make(recipe: r, inventory: i).warnings
        } catch { return error.issues }
    }

    @Test func tensorParallelMustMatchNodes() {
        let inv = goodInventory + "  - name: c\n    host: 10.0.0.3\n    user: spark\n    interconnect_ip: 192.168.100.12\n"
        #expect(onlyError(pair(goodRecipe, inv)) ==
            "r.yaml:13:23: error: tensor_parallel_size: 2 does not match the inventory: 3 nodes × 1 GPU = 3 (i.yaml)\n  hint: use an inventory with 2 nodes, or a recipe with tensor_parallel_size 3")
    }

    @Test func parserMissingFromTheImagesVLLM() {
        let inv = goodInventory.replacingOccurrences(of: "v0.24.0", with: "v0.11.0")
        let recipe = goodRecipe.replacingOccurrences(of: "min_vllm_version: 0.24.0", with: "min_vllm_version: 0.17.1")
        let errors = pair(recipe, inv).filter { $0.severity == .error }.map(\.description)
        #expect(errors.contains("r.yaml:5:19: error: min_vllm_version: the recipe needs vLLM 0.17.1, but vllm/vllm-openai:v0.11.0 runs 0.11.0\n  hint: bump `image` in i.yaml"))
        #expect(errors.contains("r.yaml:8:14: error: parsers.reasoning: `nemotron_v3` is not a registered reasoning parser in vLLM 0.11.0 (vllm/vllm-openai:v0.11.0); vLLM would fail at engine start, after loading\n  hint: it first appears in vLLM 0.17.1"))
    }

    @Test func memoryWarningOnUnifiedMemory() {
        let recipe = goodRecipe.replacingOccurrences(of: "gpu_memory_utilization: 0.8", with: "gpu_memory_utilization: 0.9")
        let issues = pair(recipe, goodInventory)
        #expect(issues.map(\.severity) == [.warning])
        #expect(issues[0].description.hasPrefix("r.yaml:12:25: warning: gpu_memory_utilization: 0.9 is above 0.85 on dgx_spark_gb10"))
    }

    @Test func oldImageWarnsAboutFingerprint() {
        let inv = goodInventory.replacingOccurrences(of: "vllm/vllm-openai:v0.24.0", with: "nvcr.io/nvidia/vllm:26.05-py3")
        let recipe = goodRecipe.replacingOccurrences(of: "min_vllm_version: 0.24.0", with: "min_vllm_version: 0.17.1")
        let issues = pair(recipe, inv)
        #expect(issues.map(\.severity) == [.warning])
        #expect(issues[0].problem.hasPrefix("vLLM 0.20.1 does not report system_fingerprint"))
    }
}

@Suite struct CatalogTests {
    @Test func aliasesDependOnVersion() {
        let c = ParserCatalog.builtin
        #expect(c.sameParser("qwen3_coder", "qwen3_xml", kind: .toolCall, version: VLLMVersion(0, 24, 0)))
        #expect(!c.sameParser("qwen3_coder", "qwen3_xml", kind: .toolCall, version: VLLMVersion(0, 21, 0)))
        #expect(c.firstRelease(with: "nemotron_v3", kind: .reasoning) == VLLMVersion(0, 17, 1))
    }

    @Test func versionFromImage() {
        #expect(VLLMVersion.fromImage("vllm/vllm-openai:v0.24.0-ubuntu2404") == VLLMVersion(0, 24, 0))
        #expect(VLLMVersion.fromImage("nvcr.io/nvidia/vllm:26.05-py3") == VLLMVersion(0, 20, 1))
        #expect(VLLMVersion.fromImage("registry:5000/vllm@sha256:abc") == nil)
        #expect(VLLMVersion("0.20.1rc1.dev135+ge786a2dfc") == VLLMVersion(0, 20, 1))
    }

    /// The generated Swift table must match data/vllm-parsers-by-version.json (run scripts/gen-parser-catalog.py).
    @Test func generatedCatalogMatchesTheData() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: repoPath("data/vllm-parsers-by-version.json")))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: [String: Any]]
        #expect(json.count == ParserCatalog.builtin.releases.count)
        for release in ParserCatalog.builtin.releases {
            let entry = try #require(json[release.version.description])
            #expect(entry["tool_call_parsers"] as? [String: String] == release.toolCallParsers)
            #expect(entry["reasoning_parsers"] as? [String: String] == release.reasoningParsers)
            #expect(entry["system_fingerprint"] as? Bool == release.systemFingerprint)
        }
    }
}
