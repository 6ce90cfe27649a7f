import Foundation
import Testing
import SousSim
import SousKit

func sous(_ args: [String]) throws -> (out: String, err: String, status: Int32) {
    let r = try run(sousBinary, args, cwd: repoRoot)
    return (String(decoding: r.out, as: UTF8.self), r.err, r.status)
}

@Suite struct CLITests {
    /// Non-finite, zero and absurd durations are bad input (exit 2), never a crash.
    @Test(arguments: ["nan", "inf", "1e300", "-5", "0", "5d"])
    func aBadDurationIsBadInput(_ value: String) throws {
        let r = try run(sousBinary, ["up", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--timeout", value],
                        cwd: repoRoot)
        #expect(r.status == 2, "\(r.err)")
        #expect(r.err.contains("--timeout"), "\(r.err)")
    }

    /// A full disk where the new key goes: rotate-key stops before it touches the cluster, and says so.
    @Test(.enabled(if: getuid() == 0, "mounts a tmpfs")) func aKeyThatCannotBeWrittenStopsTheRotationFirst() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sous-full-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = try sh("mount -t tmpfs -o size=16k tmpfs '\(dir)' && (dd if=/dev/zero of='\(dir)/fill' bs=4k 2>/dev/null || true)")
        defer { _ = try? sh("umount '\(dir)'; rmdir '\(dir)'") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: sousBinary)
        p.arguments = ["rotate-key", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--key-file", dir + "/new.key"]
        p.currentDirectoryURL = URL(fileURLWithPath: repoRoot)
        p.environment = ["VLLM_API_KEY": "old-key-1234", "PATH": "/usr/bin:/bin"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 2, "\(text)")
        #expect(text.contains("cannot write the new key to \(dir)/new.key") && text.contains("nothing was changed"), "\(text)")
        #expect(!text.contains("connect"), "it went on to the nodes: \(text)")
    }

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
        #expect(plan.out.contains("    now:     quantization: auto → the checkpoint says modelopt_mixed (MIXED_PRECISION, config.json quantization_config), KV cache FP8\n"), "\(plan.out)")
        #expect(plan.out.contains("    now:     fits: 33068982 KV tokens per rank\n"))
        let render = try sous(["render", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir])
        #expect(render.out.hasPrefix("# quantization: auto → the checkpoint says modelopt_mixed (MIXED_PRECISION, config.json quantization_config), KV cache FP8\n# sous render: "))
        // The gpt-oss recipe (kv_cache_dtype auto) against the NVFP4 checkpoint's FP8 KV calibration: a warning.
        let gpt = try sous(["plan", "--recipe", "gpt-oss-120b", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir])
        #expect(gpt.out.contains("; warning: the checkpoint was calibrated for an FP8 KV cache (config.json quantization_config); the recipe's kv_cache_dtype is auto"), "\(gpt.out)")
        let gptRender = try sous(["render", "--recipe", "gpt-oss-120b", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir])
        #expect(gptRender.err.contains("warning: the checkpoint was calibrated for an FP8 KV cache (config.json quantization_config); the recipe's kv_cache_dtype is auto"), "\(gptRender.err)")
        let fit = try sous(["fit", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--checkpoint", dir, "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(fit.out.utf8)) as! [String: Any]
        #expect(report["verdict"] as? String == "fits" && report["kv_tokens"] as? Int == 33_068_982)
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

    /// --ask-sudo-password reads the terminal; without one (setsid: no controlling terminal) it stops before any node.
    @Test func askSudoPasswordWithoutATerminalStopsFirst() throws {
        let r = try runSous(["exec", "-i", "inventory/two-sparks.yaml", "--ask-sudo-password", "--", "true"], env: "/usr/bin/setsid -w")
        #expect(r.status == 2, "\(r.err)")
        #expect(r.err.hasPrefix("error: --ask-sudo-password needs a terminal to read the password from (/dev/tty: "), "\(r.err)")
        #expect(!r.err.contains("connect"), "no node was tried: \(r.err)")
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

    static let reports: Set<String> = ["up", "roll", "rollback", "audit", "status", "history", "doctor", "check-link", "init", "client opencode", "rotate-key",
                                       "watch", "validate", "fit", "plan", "model", "harden", "exec"]

    /// Every command's help, walked from `sous --help` down: wherever an inventory or a recipe is an option, it is
    /// `-i/--inventory` and `-r/--recipe`, as in every other command.
    @Test func everyCommandTakesTheShortInventoryAndRecipeFlags() throws {
        func subcommands(_ path: [String]) throws -> [[String]] {
            let out = try sous(path + ["--help"]).out
            guard let range = out.range(of: "SUBCOMMANDS:") else { return [path] }
            // A command's line starts with two spaces and its name; its abstract's continuation lines are indented deeper.
            let names = out[range.upperBound...].split(separator: "\n").prefix { !$0.hasPrefix("  See") && !$0.isEmpty }
                .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
                .compactMap { $0.split(separator: " ").first.map(String.init) }
            guard path.count < 3 else { return [path] }
            return [path] + (try names.flatMap { try subcommands(path + [$0]) })
        }
        let all = try subcommands([])
        #expect(all.count > 25, "\(all)")
        var checked = 0
        for path in all where !path.isEmpty {
            let help = try sous(path + ["--help"]).out
            if help.contains("--inventory <") { #expect(help.contains("-i, --inventory <"), "sous \(path.joined(separator: " ")) --help"); checked += 1 }
            if help.contains("--recipe <") { #expect(help.contains("-r, --recipe <"), "sous \(path.joined(separator: " ")) --help"); checked += 1 }
            // Every command that reports on a cluster or a node says it in JSON too.
            if Self.reports.contains(path.joined(separator: " ")) { #expect(help.contains("--json"), "sous \(path.joined(separator: " ")) --help has no --json") }
        }
        #expect(checked > 15)
        #expect(Set(all.map { $0.joined(separator: " ") }).isSuperset(of: Self.reports))
    }
}
