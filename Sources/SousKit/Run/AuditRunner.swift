import Foundation

/// Gathers what runs on every node and compares it with the recipe (`sous audit`).
public struct AuditRunner: Sendable {
    public var deployment: Deployment
    public var transport: Transport

    public init(deployment: Deployment, transport: Transport) {
        self.deployment = deployment
        self.transport = transport
    }

    public struct NodeAudit: Sendable, Encodable {
        public var node: String
        public var role: String
        public var findings: [Finding]
        public var drift: Bool { findings.contains { $0.kind == .drift } }
    }

    public func run() async throws -> [NodeAudit] {
        let commands = try Renderer(deployment).nodes()
        let inv = deployment.inventory
        return try await withSessions(inv.nodes, transport: transport, reporter: SilentReporter()) { sessions in
            let outcomes = await fanOut(commands.map(\.node)) { node in
                let s = sessions[node.name]!
                let c = commands.first { $0.node.name == node.name }!
                let checkpoint = try await Checkpoint.read(s, repo: HFRepo(deployment, node: node))
                let running = try await gather(s, node: node, checkpoint: checkpoint)
                var findings = Audit.compare(expected: c, running: running, deployment: deployment)
                for step in try await Harden.run(s, check: true).steps {
                    findings.append(Finding(kind: step.status == .ok ? .ok : .drift, text: "hardening \(step.step): \(step.detail)"))
                }
                return (NodeAudit(node: node.name, role: c.isHead ? "head" : "worker", findings: findings), checkpoint)
            }
            let gathered = try outcomes.map { try $0.result.get() }
            // The checkpoint: complete on every node, and the same revision and files as the head's.
            let head = gathered.first { $0.0.role == "head" }!.1
            return gathered.map { audit, ckpt in
                var a = audit
                a.findings.append(Audit.checkpoint(ckpt, head: head, headName: inv.head.name, isHead: audit.role == "head"))
                // The recipe's KV dtype against the KV cache the checkpoint declares: a warning, not drift.
                if audit.role == "head", let w = Checkpoint.kvCacheWarning(ckpt.quantization, recipeKVDtype: deployment.engine.kvCacheDtype) {
                    a.findings.append(Finding(kind: .note, text: "warning: \(w)"))
                }
                return a
            }
        }
    }

    func gather(_ s: NodeSession, node: NodeSpec, checkpoint: CheckpointStatus) async throws -> RunningNode {
        DockerOps.parseInspect(try await s.run(DockerOps.inspect()), node: node, checkpointQuantization: checkpoint.quantization?.method)
    }
}
