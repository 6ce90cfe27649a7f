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
        return try await withSessions(inv.nodes, transport: transport, onUnreachable: { node, e in
            throw UpFailure.unreachable(node, e)
        }) { sessions in
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
                return a
            }
        }
    }

    func gather(_ s: NodeSession, node: NodeSpec, checkpoint: CheckpointStatus) async throws -> RunningNode {
        let r = try await s.run(RemoteCommand(["docker", "inspect", "--format", "{{json .}}", NodePaths.container]))
        guard r.ok, let obj = try? JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else {
            return RunningNode(node: node, running: false, imageRef: "", imageID: "", args: [], env: [], checkpointQuantization: nil)
        }
        let config = obj["Config"] as? [String: Any] ?? [:]
        let env = (config["Env"] as? [String] ?? []).map { e -> (String, String) in
            let p = e.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(p[0]), p.count > 1 ? String(p[1]) : "")
        }
        let quant = checkpoint.quantization?.method
        return RunningNode(node: node, running: (obj["State"] as? [String: Any])?["Running"] as? Bool ?? false,
                           imageRef: config["Image"] as? String ?? "", imageID: obj["Image"] as? String ?? "",
                           args: obj["Args"] as? [String] ?? [], env: env, checkpointQuantization: quant)
    }
}
