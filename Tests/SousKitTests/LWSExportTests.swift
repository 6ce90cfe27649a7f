import Foundation
import Testing
import SousTestSupport
@testable import SousKit

/// `sous export lws`: the manifests of every shipped recipe on every shipped inventory, parsed as YAML 1.1 by
/// PyYAML and validated offline by scripts/k8s-validate.py (the Kubernetes 1.37 schemas of the kubernetes-validate
/// package, strict, and the LeaderWorkerSet schema in Data/k8s; with SOUS_LWS_CRD=FILE also the CRD itself).
/// The validator lives in the venv scripts/install-k8s-validate makes (scripts/install-deps runs it).
@Suite struct LWSExportTests {
    static let python = "/var/cache/sous/k8s-validate/venv/bin/python"
    static let inventories = shippedFiles("inventory").filter { !$0.hasSuffix(".ansible.yaml") }
    static let cases: [(String, String)] = shippedFiles("recipes").flatMap { r in inventories.map { (r, $0) } }

    func load(_ recipe: String, _ inventory: String) throws -> Deployment {
        try Deployment.load(recipe: "recipes/\(recipe)", inventory: "inventory/\(inventory)", relativeTo: repoRoot)
    }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "sous-lws-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs the validator on the files; its output and exit status.
    func validate(_ files: [String]) throws -> (status: Int32, output: String) {
        #expect(FileManager.default.isExecutableFile(atPath: Self.python), "no validator venv: run `bash scripts/install-k8s-validate`")
        var args = [repoPath("scripts/k8s-validate.py"), "--lws-schema", repoPath("Tests/SousKitTests/Data/k8s/leaderworkerset-v1.schema.json")]
        if let crd = ProcessInfo.processInfo.environment["SOUS_LWS_CRD"] { args += ["--lws-crd", crd] }
        let r = try Local.run(Self.python, args + files, check: false)
        return (r.status, r.output)
    }

    func write(_ text: String, _ dir: String, _ name: String) throws -> String {
        let path = "\(dir)/\(name)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func everyShippedRecipeOnEveryInventoryValidates() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var files: [String] = []
        for (recipe, inventory) in Self.cases {
            let m = try LWSExport.manifest(try load(recipe, inventory), options: .init(namespace: "llm"))
            files.append(try write(m.yaml, dir, "\(recipe.dropLast(5))@\(inventory)"))
        }
        #expect(files.count >= 8)
        let r = try validate(files)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.hasSuffix("\(files.count * 2) passed, 0 failed\n"), "\(r.output)")
    }

    /// The validator is no rubber stamp: each of these breaks one rule and fails, and the good file beside them passes.
    @Test func theValidatorRejectsWhatKubernetesWould() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try LWSExport.manifest(try load("qwen3-coder-30b-a3b-fp8.yaml", "four-sparks.yaml")).yaml
        let mutations: [(String, String, String)] = [
            ("restartPolicy: \"RecreateGroupOnPodRestart\"", "restartPolicy: \"Always\"", "restartPolicy: 'Always' is not one of"),
            ("    size: 2\n", "    size: \"2\"\n", "size: '2' is not of type 'integer'"),
            ("  replicas: 2\n", "  replicas: -1\n", "replicas: -1 is less than the minimum of 0"),
            ("\"$(LWS_WORKER_INDEX)\"", "\"$(LWS_WORKER_IDX)\"", "args refers to $(LWS_WORKER_IDX), which no env variable defines"),
            ("        hostNetwork: true\n", "        hostNetwork: true\n        hostNetwrk: true\n", "'hostNetwrk' was unexpected"),
            ("            value: \"1\"\n", "            value: 1\n", "1 is not of type 'string'"),
            ("            valueFrom:\n              secretKeyRef:\n                name: \"four-sparks-api-key\"\n                key: \"api-key\"\n",
             "            value: \"sk-in-the-clear\"\n", "env VLLM_API_KEY holds a literal value"),
            ("  name: \"four-sparks\"\n", "  name: \"four.sparks\"\n", "does not match"),
            ("    targetPort: 8000\n", "    targetPort: 8000\n    nodePort: \"x\"\n", "Service/four-sparks-leader: Kubernetes 1.37.0: spec.ports.0.nodePort"),
        ]
        var files = [try write(good, dir, "good.yaml")]
        for (i, (from, to, _)) in mutations.enumerated() {
            #expect(good.contains(from), "mutation \(i): `\(from)` is not in the manifest")
            files.append(try write(good.replacingOccurrences(of: from, with: to), dir, "bad\(i).yaml"))
        }
        let r = try validate(files)
        #expect(r.status == 1)
        for (i, (_, _, message)) in mutations.enumerated() {
            let lines = r.output.split(separator: "\n").filter { $0.hasPrefix("FAIL \(dir)/bad\(i).yaml") }
            #expect(lines.contains { $0.contains(message) }, "bad\(i).yaml: expected `\(message)` in \(lines)")
        }
        #expect(r.output.contains("ok   \(dir)/good.yaml[0] LeaderWorkerSet/four-sparks\nok   \(dir)/good.yaml[1] Service/four-sparks-leader\n"), "\(r.output)")
        #expect(r.output.hasSuffix("\(2 + mutations.count) passed, \(mutations.count) failed\n"), "\(r.output)")
    }

    @Test func groupsBecomeReplicasAndTheNodesOfOneGroupItsSize() throws {
        let four = try LWSExport.manifest(try load("nemotron-3-super-nvfp4.yaml", "four-sparks.yaml")).yaml
        #expect(four.contains("\nspec:\n  replicas: 2\n  leaderWorkerTemplate:\n    size: 2\n    restartPolicy: \"RecreateGroupOnPodRestart\"\n"))
        let two = try LWSExport.manifest(try load("nemotron-3-super-nvfp4.yaml", "two-sparks.yaml")).yaml
        #expect(two.contains("\nspec:\n  replicas: 1\n  leaderWorkerTemplate:\n    size: 2\n"))
    }

    /// The leader and the workers run exactly `sous render`'s arguments, the per-node flags replaced by LWS's variables.
    @Test func theServeArgumentsAreTheRenderedOnes() throws {
        let d = try load("gpt-oss-120b.yaml", "four-sparks.yaml")
        let yaml = try LWSExport.manifest(d).yaml
        let rendered = try Renderer(d).nodes()
        func args(_ container: String) -> [String] {
            let start = yaml.range(of: "- name: \"\(container)\"")!.upperBound
            let block = yaml[start...].components(separatedBy: "          args:\n")[1].components(separatedBy: "          env:\n")[0]
            return block.split(separator: "\n").map { line in
                try! JSONDecoder().decode(String.self, from: Data(line.dropFirst("          - ".count).utf8))
            }
        }
        let shared = Array(rendered[0].serveArgv.prefix { $0 != "--nnodes" })
        #expect(args("vllm-leader") == shared + ["--nnodes", "$(LWS_GROUP_SIZE)", "--node-rank", "$(LWS_WORKER_INDEX)",
                                                 "--master-addr", "$(LWS_LEADER_ADDRESS)", "--master-port", "29501", "--host", "0.0.0.0", "--port", "8000"])
        #expect(args("vllm-worker") == shared + ["--nnodes", "$(LWS_GROUP_SIZE)", "--node-rank", "$(LWS_WORKER_INDEX)",
                                                 "--master-addr", "$(LWS_LEADER_ADDRESS)", "--master-port", "29501", "--headless"])
        #expect(shared.first == "serve" && shared.contains("--served-model-name"))
    }

    /// The key never appears: a Secret reference on the leader only, whatever the environment holds.
    @Test func noSecretValueInTheManifests() throws {
        let sentinel = "sk-sentinel-\(UUID().uuidString)"
        let r = try runSous(["export", "lws", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/four-sparks.yaml"],
                            env: "VLLM_API_KEY=\(sentinel) HF_TOKEN=\(sentinel)")
        #expect(r.status == 0, "\(r.err)")
        #expect(!r.out.contains(sentinel) && !r.err.contains(sentinel))
        #expect(r.out.components(separatedBy: "- name: \"VLLM_API_KEY\"\n            valueFrom:\n              secretKeyRef:\n                name: \"four-sparks-api-key\"\n                key: \"api-key\"\n").count == 2,
                "one secretKeyRef, in the leader")
        #expect(r.out.components(separatedBy: "VLLM_API_KEY").count == 3, "the secretKeyRef and the kubectl hint only")
        #expect(r.out.contains("#   printf %s \"$VLLM_API_KEY\" | kubectl create secret generic four-sparks-api-key --from-file=api-key=/dev/stdin\n"))
        #expect(!r.out.contains("HF_TOKEN"))
    }

    /// Values Kubernetes or YAML could read as something else come through as the same strings: `$` doubled
    /// (Kubernetes expands `$(NAME)`), every string quoted (YAML 1.1 reads `on`, `0755` or `1e3` as a bool or a
    /// number); a recipe of one GPU per group makes groups of one pod with no rendezvous flags.
    @Test func awkwardValuesSurviveKubernetesAndYAML() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = goodRecipe.replacingOccurrences(of: "tensor_parallel_size: 2", with: "tensor_parallel_size: 1") + """
        env:
          A_BOOL: "on"
          AN_OCTAL: "0755"
          A_FLOAT: "1e3"
          A_NULL: "~"
          A_REF: "$(HOME)/x $$"
        extra_args:
          served_model_name_suffix: "yes"

        """
        let r = try RecipeReader.parse(recipe, file: "r.yaml").0
        let i = try InventoryReader.parse(goodInventory, file: "i.yaml").0
        let d = try Deployment.make(recipe: r, inventory: i)
        #expect(d.groups.count == 2 && d.groupSize == 1)
        let m = try LWSExport.manifest(d)
        #expect(m.yaml.contains("\nspec:\n  replicas: 2\n  leaderWorkerTemplate:\n    size: 1\n"))
        #expect(!m.yaml.contains("--nnodes") && !m.yaml.contains("--headless") && !m.yaml.contains("LWS_"))
        #expect(m.yaml.contains("- name: \"A_REF\"\n            value: \"$$(HOME)/x $$$$\"\n"))
        #expect(m.yaml.contains("- \"--served-model-name-suffix\"\n          - \"yes\"\n"))
        let file = try write(m.yaml, dir, "awkward.yaml")
        let v = try validate([file])
        #expect(v.status == 0, "\(v.output)")
        // PyYAML's SafeLoader (YAML 1.1) reads every value back as the string written.
        let probe = try Local.run(Self.python, ["-c", """
            import sys, yaml
            lws = list(yaml.safe_load_all(open(sys.argv[1])))[0]
            env = {e["name"]: e.get("value") for e in lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["env"]}
            print(repr([env[k] for k in ["A_BOOL", "AN_OCTAL", "A_FLOAT", "A_NULL", "A_REF"]]))
            """, file], check: false)
        #expect(probe.output == "['on', '0755', '1e3', '~', '$$(HOME)/x $$$$']\n", "\(probe.output)")
    }

    @Test func whatCannotBeExportedIsAUsageError() throws {
        let d = try load("nemotron-3-super-nvfp4.yaml", "two-sparks.yaml")
        #expect(throws: UsageError.self) { try LWSExport.manifest(d, options: .init(name: "Two_Sparks")) }
        #expect(throws: UsageError.self) { try LWSExport.manifest(d, options: .init(namespace: "LLM")) }
        #expect(throws: UsageError.self) { try LWSExport.manifest(d, options: .init(rdmaResource: "rdma shared")) }
        var ray = d
        ray.inventory.launcher = .ray
        #expect(throws: UsageError.self) { try LWSExport.manifest(ray) }
        let dotted = try runSous(["export", "lws", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/two-sparks.yaml", "--name", "a.b"])
        #expect(dotted.status == 2)
        #expect(dotted.err == "error: `a.b` cannot name a LeaderWorkerSet: lowercase letters, digits and '-', starting with a letter, at most 40 characters\nhint: choose another --name\n")
    }

    @Test func outputReplacesTheFileWholeOrNotAtAll() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ok = try runSous(["export", "lws", "--recipe", "qwen3-coder-30b-a3b-fp8", "--inventory", "inventory/four-sparks.yaml", "--output", "\(dir)/lws.yaml", "--rdma-resource", "none"])
        #expect(ok.status == 0 && ok.out.isEmpty)
        #expect(ok.err == "wrote \(dir)/lws.yaml: LeaderWorkerSet four-sparks (2 × 2 pods), Service four-sparks-leader\n")
        let text = try String(contentsOfFile: "\(dir)/lws.yaml", encoding: .utf8)
        #expect(text.hasPrefix("# sous export lws: recipe qwen3-coder-30b-a3b-fp8") && !text.contains("rdma/"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["lws.yaml"])
        let bad = try runSous(["export", "lws", "--recipe", "qwen3-coder-30b-a3b-fp8", "--inventory", "inventory/four-sparks.yaml", "--output", "\(dir)/missing/lws.yaml"])
        #expect(bad.status == 2)
        #expect(bad.err.hasPrefix("error: cannot write \(dir)/missing/lws.yaml: No such file or directory; nothing was written\n"), "\(bad.err)")
    }

    /// The reviewed manifest of the seed's recipe on four Sparks; `SOUS_UPDATE_GOLDEN=1` rewrites it.
    @Test func goldenManifest() throws {
        let text = try LWSExport.manifest(try load("nemotron-3-super-nvfp4.yaml", "four-sparks.yaml"), options: .init(namespace: "llm")).yaml
        let path = repoPath("Tests/SousKitTests/Golden/nemotron-3-super-nvfp4@four-sparks.lws.yaml")
        if ProcessInfo.processInfo.environment["SOUS_UPDATE_GOLDEN"] == "1" {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        #expect(text == (try String(contentsOfFile: path, encoding: .utf8)))
    }
}
