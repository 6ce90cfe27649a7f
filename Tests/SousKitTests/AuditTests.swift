import Foundation
import Testing
@testable import SousKit

@Suite struct AuditTests {
    let d: Deployment
    let nodes: [NodeCommand]
    init() throws {
        d = try Deployment.load(recipe: "recipes/nemotron-3-super-nvfp4.yaml", inventory: "inventory/two-sparks.yaml", relativeTo: repoRoot)
        nodes = try Renderer(d).nodes()
    }

    func running(_ c: NodeCommand, args: [String]? = nil, env: [(String, String)]? = nil, image: String? = nil, quant: String? = nil, kept: Bool = true) -> RunningNode {
        let plain = c.env.map { ($0.name, { if case .plain(let v) = $0 { return v } else { return "secret" } }($0.value)) }
        return RunningNode(node: c.node, running: true, imageRef: image ?? d.inventory.image, imageID: "sha256:abc", args: args ?? c.serveArgv,
                           env: env ?? plain, checkpointQuantization: quant, kept: kept)
    }

    func drifts(_ r: RunningNode, _ c: NodeCommand) -> [String] {
        Audit.compare(expected: c, running: r, deployment: d).filter { $0.kind == .drift }.map(\.text)
    }

    @Test func cleanNodeHasNoDrift() {
        for c in nodes { #expect(drifts(running(c), c) == []) }
    }

    /// A rank of a multi-node group without the keeper would not come back with its group after a reboot.
    @Test func aRankWithoutTheKeeperIsDrift() {
        #expect(drifts(running(nodes[1], kept: false), nodes[1]).first?.hasPrefix("`vllm serve` runs without sous's keeper") == true)
        // The keeper's arguments come off before the serve flags are compared.
        let parsed = Keeper.serveArgs(nodes[1].containerArgs)
        #expect(parsed.kept && parsed.serve == nodes[1].serveArgv)
        #expect(Keeper.serveArgs(nodes[1].serveArgv) == (nodes[1].serveArgv, false))
    }

    @Test func changedMissingAndExtraFlags() {
        let c = nodes[1]
        var args = c.serveArgv
        args[args.firstIndex(of: "262144")!] = "131072"
        args.removeAll { $0 == "--enable-chunked-prefill" }
        args += ["--enforce-eager"]
        #expect(drifts(running(c, args: args), c) == [
            "--max-model-len 131072, the recipe renders 262144",
            "missing --enable-chunked-prefill",
            "extra --enforce-eager",
            "client.context 229376 is not below the running max-model-len 131072: agents will send prompts the server rejects",
        ])
    }

    @Test func parserAliasesAreNotDrift() {
        let c = nodes[0]
        var args = c.serveArgv
        args[args.firstIndex(of: "qwen3_coder")!] = "qwen3_xml"
        let findings = Audit.compare(expected: c, running: running(c, args: args), deployment: d)
        #expect(findings.contains(Finding(kind: .note, text: "--tool-call-parser qwen3_xml is the same parser as qwen3_coder in vLLM 0.24.0")))
        #expect(!findings.contains { $0.kind == .drift })
        // On 0.21 they were two parsers.
        #expect(drifts(running(c, args: args, image: "vllm/vllm-openai:v0.21.0"), c).contains("--tool-call-parser qwen3_xml, the recipe renders qwen3_coder"))
    }

    @Test func forcedQuantizationAgainstTheCheckpoint() {
        let c = nodes[0]
        let args = c.serveArgv + ["--quantization", "fp8"]
        #expect(drifts(running(c, args: args, quant: "modelopt_fp4"), c) == ["--quantization fp8 is forced, but the checkpoint says modelopt_fp4"])
    }

    @Test func samplingImageAndEnvDrift() {
        let c = nodes[1]
        var args = c.serveArgv
        args[args.firstIndex(of: #"{"temperature":1.0,"top_p":0.95}"#)!] = #"{"temperature":0.6}"#
        var env = running(c).env
        env.append(("NCCL_IB_GID_INDEX", "3"))
        env.append(("VLLM_API_KEY", "leaked"))
        env[env.firstIndex { $0.name == "NCCL_SOCKET_IFNAME" }!].value = "enP2p1s0f1np1"
        let found = drifts(running(c, args: args, env: env, image: "vllm/vllm-openai:v0.28.0"), c)
        #expect(found == [
            "image vllm/vllm-openai:v0.28.0, the inventory pins vllm/vllm-openai:v0.24.0",
            #"sampling {"temperature":0.6}, the card's is {"temperature":1.0,"top_p":0.95}"#,
            "env NCCL_SOCKET_IFNAME=enP2p1s0f1np1, the recipe renders enp1s0f1np1",
            "env NCCL_IB_GID_INDEX is pinned (the GID table drifts; a pinned index hangs the handshake)",
            "the API key is set on a worker (it belongs on the head only)",
        ])
        #expect(!found.joined().contains("leaked"))
    }

    @Test func stoppedEngine() {
        var r = running(nodes[0])
        r.running = false
        #expect(drifts(r, nodes[0]) == ["the engine container is not running"])
    }
}
