import Foundation
import Testing
@testable import SousKit

/// Exact render of every shipped recipe on every shipped inventory, in every format, against reviewed golden files.
/// `SOUS_UPDATE_GOLDEN=1 swift test` rewrites them; review the diff before committing.
@Suite struct RenderGoldenTests {
    /// The Ansible form of an inventory renders exactly like its native twin (checked below), so golden files
    /// are kept for the native inventories only.
    static let inventories = shippedFiles("inventory").filter { !$0.hasSuffix(".ansible.yaml") }
    static let cases: [(String, String)] = shippedFiles("recipes").flatMap { r in inventories.map { (r, $0) } }

    @Test(arguments: cases)
    func goldenRender(recipe: String, inventory: String) throws {
        let d = try Deployment.load(recipe: "recipes/\(recipe)", inventory: "inventory/\(inventory)", relativeTo: repoRoot)
        let renderer = Renderer(d)
        let outputs: [(String, String)] = [
            ("sh", try RenderReport.shell(d, nodes: try renderer.nodes())),
            ("config.sh", try RenderReport.config(d, nodes: try renderer.nodes(form: .config), yaml: renderer.configYAML())),
            ("json", try RenderReport.json(d, nodes: try renderer.nodes(), configYAML: renderer.configYAML())),
        ]
        for (ext, text) in outputs {
            let name = "\(recipe.dropLast(5))@\(inventory.dropLast(5)).\(ext)"
            let path = repoPath("Tests/SousKitTests/Golden/\(name)")
            if ProcessInfo.processInfo.environment["SOUS_UPDATE_GOLDEN"] == "1" {
                try text.write(toFile: path, atomically: true, encoding: .utf8)
            }
            let expected = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text == expected, "render differs from Golden/\(name)")
        }
    }

    @Test func everyShippedPairIsCovered() {
        #expect(Self.cases.count == shippedFiles("recipes").count * Self.inventories.count)
        #expect(shippedFiles("recipes").count >= 4)
    }

    @Test(arguments: shippedFiles("recipes"))
    func ansibleInventoryRendersLikeItsNativeTwin(recipe: String) throws {
        for ansible in shippedFiles("inventory").filter({ $0.hasSuffix(".ansible.yaml") }) {
            let native = ansible.replacingOccurrences(of: ".ansible.yaml", with: ".yaml")
            let a = try Deployment.load(recipe: "recipes/\(recipe)", inventory: "inventory/\(ansible)", relativeTo: repoRoot)
            let n = try Deployment.load(recipe: "recipes/\(recipe)", inventory: "inventory/\(native)", relativeTo: repoRoot)
            #expect(try RenderReport.shell(a, nodes: Renderer(a).nodes()) == RenderReport.shell(n, nodes: Renderer(n).nodes()))
            #expect(try RenderReport.json(a, nodes: Renderer(a).nodes(), configYAML: Renderer(a).configYAML())
                    == RenderReport.json(n, nodes: Renderer(n).nodes(), configYAML: Renderer(n).configYAML()))
        }
    }
}

@Suite struct RenderDetailTests {
    func deployment(_ recipe: String = "nemotron-3-super-nvfp4", _ inventory: String = "two-sparks") throws -> Deployment {
        try Deployment.load(recipe: "recipes/\(recipe).yaml", inventory: "inventory/\(inventory).yaml", relativeTo: repoRoot)
    }

    @Test func headAndWorkerServeFlags() throws {
        let nodes = try Renderer(try deployment()).nodes()
        let head = try ShellQuote.join(nodes[0].serveArgv), worker = try ShellQuote.join(nodes[1].serveArgv)
        #expect(head.hasSuffix("--nnodes 2 --node-rank 0 --master-addr 192.168.100.10 --master-port 29501 --host 0.0.0.0 --port 8000"))
        #expect(worker.hasSuffix("--nnodes 2 --node-rank 1 --master-addr 192.168.100.10 --master-port 29501 --headless"))
        #expect(!worker.contains("--port"))
        #expect(head.contains("--tool-call-parser qwen3_coder --enable-auto-tool-choice --reasoning-parser nemotron_v3"))
        // The DGX Spark profile lowers the memory fraction from 0.85.
        #expect(head.contains("--gpu-memory-utilization 0.8 "))
        #expect(!head.contains("--quantization"))
        #expect(head.contains(#"--override-generation-config '{"temperature":1.0,"top_p":0.95}'"#))
    }

    @Test func apiKeyOnlyInHeadEnvFileAndNeverRendered() throws {
        let nodes = try Renderer(try deployment()).nodes()
        #expect(nodes[0].env.last!.name == "VLLM_API_KEY")
        #expect(nodes[0].env.last!.value == .secret(fromLocalEnv: "VLLM_API_KEY"))
        #expect(!nodes[1].env.contains { $0.name == "VLLM_API_KEY" })
        #expect(try nodes[0].envFile().hasSuffix("VLLM_API_KEY=[REDACTED]\n"))
        #expect(try nodes[0].envFile(secret: Secret("s3cret")).hasSuffix("VLLM_API_KEY=s3cret\n"))
        for n in nodes {
            // The keeper reads the key from the container's env by name; no value is ever on the command line.
            #expect(!n.dockerArgv.joined().contains("s3cret") && !n.dockerArgv.contains { $0.contains("API_KEY=") })
            #expect(!n.env.contains { $0.name == "NCCL_IB_GID_INDEX" })
        }
        #expect("\(Secret("s3cret"))" == "[REDACTED]")
    }

    @Test func explicitQuantizationRendersItsFlag() throws {
        var d = try deployment("qwen3-coder-30b-a3b-fp8")
        d.recipe.quantization = .method("fp8", reason: "test")
        let argv = try Renderer(d).nodes()[0].serveArgv
        #expect(argv.contains("--quantization"))
        #expect(argv[argv.firstIndex(of: "--quantization")! + 1] == "fp8")
    }

    @Test func configFormKeepsOnlyPerNodeFlagsOnTheCommandLine() throws {
        let d = try deployment()
        let r = Renderer(d)
        let nodes = try r.nodes(form: .config)
        #expect(nodes[1].serveArgv == ["serve", "--config", "/etc/sous/serve.yaml", "--nnodes", "2", "--node-rank", "1",
                                       "--master-addr", "192.168.100.10", "--master-port", "29501", "--headless"])
        let yaml = r.configYAML()
        #expect(yaml.contains("\nmodel: \"nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4\"\n"))
        #expect(yaml.contains("\ntensor-parallel-size: 2\n"))
        #expect(yaml.contains("\nenable-auto-tool-choice: true\n"))
        #expect(yaml.contains(#"override-generation-config: "{\"temperature\":1.0,\"top_p\":0.95}""#))
    }

    @Test func rayLauncherForm() throws {
        var d = try deployment()
        d.inventory.launcher = .ray
        let nodes = try Renderer(d).nodes()
        let head = try ShellQuote.join(nodes[0].dockerArgv), worker = try ShellQuote.join(nodes[1].dockerArgv)
        #expect(head.contains("--entrypoint bash vllm/vllm-openai:v0.24.0 -c 'ray start --head --port 6379 --node-ip-address 192.168.100.10 && exec vllm serve "))
        #expect(head.contains("--distributed-executor-backend ray"))
        #expect(!head.contains("--nnodes"))
        #expect(worker.hasSuffix("--entrypoint ray vllm/vllm-openai:v0.24.0 start --block --address 192.168.100.10:6379 --node-ip-address 192.168.100.11"))
        #expect(nodes[1].env.contains { $0.name == "RAY_memory_monitor_refresh_ms" })
    }

    /// The one env-file writer: Docker reads `NAME=VALUE` lines literally, so a line break in a value is another
    /// variable. A name must be an identifier; a secret's value is never shown in the error.
    @Test func theEnvFileWriterRefusesWhatOneLineCannotCarry() throws {
        #expect(try EnvFile.line("A", #"x=y 'q' "d" $(id) `id` ; #"#) == #"A=x=y 'q' "d" $(id) `id` ; #"#)
        for value in ["a\nLD_PRELOAD=/tmp/x.so", "a\rb", "a\u{0}b", "\n"] {
            #expect(throws: ShellQuote.Unrepresentable.self) { try EnvFile.line("A", value) }
        }
        for name in ["", "1A", "A B", "A\nB", "A=B", "-A", "É"] {
            #expect(throws: ShellQuote.Unrepresentable.self) { try EnvFile.line(name, "x") }
        }
        do {
            _ = try EnvFile.line("VLLM_API_KEY", "s3cret\nLD_PRELOAD=/tmp/x.so", secret: true)
            Issue.record("a secret with a line break was written")
        } catch {
            #expect(error.message == #"the value of VLLM_API_KEY holds U+000A: a Docker env file line cannot carry a line break or a NUL: "[REDACTED]""#)
        }
    }

    /// Values changed after validation (as code can) still cannot add a line to vllm.env: the render stops.
    /// Before, only a NUL stopped it, and the heredoc wrote `LD_PRELOAD=…` as a line of its own.
    @Test func aLineBreakInAnyEnvValueStopsTheRender() throws {
        var d = try deployment()
        d.inventory.nodes[1].interconnectIP = "1:2\nLD_PRELOAD=/tmp/x.so"
        #expect(throws: ShellQuote.Unrepresentable.self) { try Renderer(d).nodes() }
        d = try deployment()
        d.engine.env.append((name: "X", value: "a\rLD_PRELOAD=/tmp/x.so"))
        #expect(throws: ShellQuote.Unrepresentable.self) { try Renderer(d).nodes() }
        d = try deployment()
        d.inventory.interface = "eth0\nLD_PRELOAD=/tmp/x.so"
        #expect(throws: ShellQuote.Unrepresentable.self) { try Renderer(d).nodes() }
    }

    /// The text uploaded over SFTP comes from the same writer: a key holding a line break is refused.
    @Test func theUploadedEnvFileIsCheckedToo() throws {
        let nodes = try Renderer(try deployment()).nodes()
        #expect(try nodes[0].envFile(secret: Secret("s3cret")).hasSuffix("\nHF_HUB_OFFLINE=1\nVLLM_FLOAT32_MATMUL_PRECISION=high\nVLLM_ENGINE_READY_TIMEOUT_S=1860\nVLLM_API_KEY=s3cret\n"), "the recipe's env (the Spark numerics variable) and the engine-ready timeout (up's default 30 min and a minute) come before the key")
        #expect(throws: ShellQuote.Unrepresentable.self) { try nodes[0].envFile(secret: Secret("s3cret\nLD_PRELOAD=/tmp/x.so")) }
        #expect(!(try nodes[1].envFile(secret: Secret("s3cret\nx"))).contains("s3cret"), "workers never get the key")
    }

    /// Comments echo names and addresses: a control character (set by code, past validation) stays escaped.
    @Test func commentsCannotBreakOutOfTheirLine() throws {
        var d = try deployment()
        d.inventory.nodes[0].name = "a\nrm -rf ~"
        let text = try RenderReport.shell(d, nodes: Renderer(d).nodes())
        #expect(text.contains("# ── a\\u{A}rm -rf ~ · head"))
        #expect(!text.contains("\nrm -rf"))
    }

    @Test func nulInAValueIsRejectedBeforeRendering() throws {
        var d = try deployment()
        d.inventory.nodes[0].interconnectIP = "10.0.0.1\u{0}"
        #expect(throws: ShellQuote.Unrepresentable.self) { try Renderer(d).nodes() }
    }

    @Test func planListsStepsInOrder() throws {
        let steps = UpPlan.steps(try deployment())
        #expect(steps.map(\.id) == ["preflight", "model", "fit", "harden.sshd", "harden.earlyoom", "pull", "env", "start.workers", "start.head", "wait", "verify", "journal"])
        #expect(steps.first { $0.id == "start.workers" }!.nodes == ["spark-b"])
        #expect(steps.first { $0.id == "verify" }!.check.contains("a real completion whose system_fingerprint contains -tp2-"))
    }

    @Test func oldImageWithoutFingerprintSaysSo() throws {
        var d = try deployment()
        d.inventory.vllmVersion = VLLMVersion(0, 20, 1)
        #expect(UpPlan.steps(d).first { $0.id == "verify" }!.check.contains("vLLM 0.20.1 has no system_fingerprint"))
    }
}
