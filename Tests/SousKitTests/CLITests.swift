import Foundation
import Testing
import SousSim
import SousKit

func sous(_ args: [String]) throws -> (out: String, err: String, status: Int32) {
    let r = try run(sousBinary, args, cwd: repoRoot)
    return (String(decoding: r.out, as: UTF8.self), r.err, r.status)
}

@Suite struct CLITests {
    @Test func renderTheSeedsPair() throws {
        let r = try sous(["render", "--recipe", "recipes/nemotron-3-super-nvfp4.yaml", "--inventory", "inventory/two-sparks.yaml"])
        #expect(r.status == 0)
        #expect(r.err == "")
        let expected = try String(contentsOfFile: repoPath("Tests/SousKitTests/Golden/nemotron-3-super-nvfp4@two-sparks.sh"), encoding: .utf8)
        #expect(r.out == expected)
    }

    @Test func recipeByNameAndOneNode() throws {
        let r = try sous(["render", "--recipe", "gpt-oss-120b", "--inventory", "inventory/two-sparks.yaml", "--node", "spark-b", "--format", "json"])
        #expect(r.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        let nodes = json["nodes"] as! [[String: Any]]
        #expect(nodes.map { $0["name"] as! String } == ["spark-b"])
    }

    /// A local copy of a checkpoint: plan and render say what vLLM will detect, plan and fit give the verdict.
    @Test func aLocalCheckpointShowsTheDetectedMethodAndTheVerdict() throws {
        let hub = FileManager.default.temporaryDirectory.appendingPathComponent("sous-hub-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: hub) }
        let repo = SimHub.repos.first { $0.model == "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4" }!
        try SimHub.write(repo, to: hub, shardBytes: 64)
        let dir = "\(hub)/\(repo.model)"
        let plan = try sous(["plan", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir])
        #expect(plan.status == 0, "\(plan.err)")
        #expect(plan.out.contains("    now:     quantization: auto → the checkpoint says modelopt_fp4 (hf_quant_config.json), KV cache FP8\n"))
        #expect(plan.out.contains("    now:     fits: 33102230 KV tokens per rank\n"))
        let render = try sous(["render", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir])
        #expect(render.out.hasPrefix("# quantization: auto → the checkpoint says modelopt_fp4 (hf_quant_config.json), KV cache FP8\n# sous render: "))
        // The gpt-oss recipe (kv_cache_dtype auto) against the NVFP4 checkpoint's FP8 KV calibration: a warning.
        let gpt = try sous(["plan", "--recipe", "gpt-oss-120b", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir])
        #expect(gpt.out.contains("; warning: the checkpoint was calibrated for an FP8 KV cache (hf_quant_config.json); the recipe's kv_cache_dtype is auto"))
        let fit = try sous(["fit", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir, "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(fit.out.utf8)) as! [String: Any]
        #expect(report["verdict"] as? String == "fits" && report["kv_tokens"] as? Int == 33_102_230)
    }

    @Test func badInputExitsTwoAndNamesTheProblem() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sous-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = try String(contentsOfFile: repoPath("recipes/nemotron-3-super-nvfp4.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "reasoning: nemotron_v3", with: "reasoning: nemotron_v4")
        try recipe.write(toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
        let r = try sous(["render", "--recipe", "\(dir)/bad.yaml", "--inventory", "inventory/two-sparks.yaml"])
        #expect(r.status == 2)
        #expect(r.out == "")
        #expect(r.err.contains("\(dir)/bad.yaml:11:14: error: parsers.reasoning: `nemotron_v4` is not a reasoning parser in any vLLM release sous knows"))
        #expect(r.err.contains("hint: did you mean `nemotron_v3`?"))
    }

    @Test func usageErrorsExitTwo() throws {
        #expect(try sous(["render", "--recipe", "x"]).status == 2)
        #expect(try sous(["frobnicate"]).status == 2)
        let r = try sous(["render", "--recipe", "gpt-oss-120b", "--inventory", "inventory/two-sparks.yaml", "--node", "spark-z"])
        #expect(r.status == 2)
        #expect(r.err == "error: no node named `spark-z` in inventory/two-sparks.yaml\nhint: nodes: spark-a, spark-b\n")
        #expect(try sous(["render", "--recipe", "gpt-oss-120b", "--inventory", "inventory/missing.yaml"]).err
            .contains("inventory/missing.yaml: error: cannot read the file (does it exist?)"))
    }

    @Test func recipesListsEveryShippedRecipe() throws {
        let r = try sous(["recipes"])
        #expect(r.status == 0)
        let lines = r.out.split(separator: "\n")
        #expect(lines.count == 1 + shippedFiles("recipes").count)
        #expect(lines.contains { $0.hasPrefix("nemotron-3-super-nvfp4") && $0.contains("qwen3_coder") && $0.contains("nemotron_v3") })
    }

    @Test func versionAndHelp() throws {
        // The version, the commit this tree is at, and whether it has uncommitted changes, as git says.
        let commit = try sh("git -C \(repoRoot) rev-parse --short=12 HEAD").trimmingCharacters(in: .whitespacesAndNewlines)
        let dirty = !(try sh("git -C \(repoRoot) status --porcelain --untracked-files=no")).isEmpty
        #expect(try sous(["--version"]).out == "sous \(SousVersion.number) (\(commit)\(dirty ? ", dirty tree" : ""))\n")
        let help = try sous(["render", "--help"])
        #expect(help.status == 0)
        #expect(help.out.contains("--format"))
    }
}
