import Foundation

/// `sous status`: per node, reachable, container and image, GPU processes, sshd oom_score_adj, earlyoom; then
/// the endpoint's health, fingerprint and the last journal entry.
public struct StatusReport: Sendable, Encodable {
    public struct Row: Sendable, Encodable {
        public var node: String, role: String, reachable: Bool
        public var container: String?, image: String?, gpu_processes: Int?, sshd_oom_score_adj: String?, earlyoom: String?, error: String?
    }
    public var nodes: [Row]
    public var health: String
    public var fingerprint: String?
    public var last_journal_entry: JournalEntry?

    /// Reads every node at once (one command each) and the endpoint; an unreachable node is a row, not a throw.
    public static func gather(_ inv: Inventory, transport: Transport, probe: HTTPProbe, model: String?, key: Secret?) async -> StatusReport {
        let outcomes = await fanOut(inv.nodes) { node in
            try await transport.with(node) { StatusOps.parse(try await $0.run(StatusOps.read()).stdoutText) }
        }
        var rows: [Row] = [], journal: JournalEntry?
        for o in outcomes {
            let role = o.node.role == .head ? "head" : "worker"
            switch o.result {
            case .success(let st):
                rows.append(Row(node: o.node.name, role: role, reachable: true, container: st.container, image: st.image, gpu_processes: st.gpuProcesses,
                                sshd_oom_score_adj: st.sshdOOMScoreAdj, earlyoom: st.earlyoom, error: nil))
                if o.node.role == .head, let line = st.lastJournalLine { journal = JournalOps.parse(line).entries.first }
            case .failure(let e):
                rows.append(Row(node: o.node.name, role: role, reachable: false, error: (e as? SousFailure)?.message ?? "\(e)"))
            }
        }
        let base = inv.baseURL
        let health = (try? await probe.get(base + "/health", bearer: nil, timeout: .seconds(5))).map { "\($0.status)" } ?? "no answer"
        var fingerprint: String?
        if let model, let r = try? await probe.post(base + "/v1/chat/completions", json: AgentChecks.pingRequest(model: model), bearer: key, timeout: .seconds(20)) {
            fingerprint = (try? JSONSerialization.jsonObject(with: r.body) as? [String: Any])?["system_fingerprint"] as? String
        }
        return StatusReport(nodes: rows, health: health, fingerprint: fingerprint, last_journal_entry: journal)
    }
}

/// `sous check-link`: from each node, every other node's interconnect address, the MTU on both ends, and
/// NCCL_IB_GID_INDEX anywhere.
public struct LinkReport: Sendable, Encodable {
    public struct NodeLink: Sendable, Encodable {
        public var node: String
        public var mtu: String
        public var peers: [String]
        public var gidIndexSet: Bool
        enum CodingKeys: String, CodingKey { case node, mtu, peers, gidIndexSet = "nccl_ib_gid_index_set" }
    }
    public var nodes: [NodeLink]
    public var errors: [String]

    public var mtuMismatch: Bool { Set(nodes.map(\.mtu)).count > 1 }

    enum CodingKeys: String, CodingKey { case nodes, errors, mtu_mismatch, problems }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nodes, forKey: .nodes)
        try c.encode(errors, forKey: .errors)
        try c.encode(mtuMismatch, forKey: .mtu_mismatch)
        try c.encode(problems, forKey: .problems)
    }
    public var problems: Int {
        errors.count + nodes.reduce(0) { $0 + $1.peers.filter { $0.hasPrefix("unreachable") }.count + ($1.gidIndexSet ? 1 : 0) } + (mtuMismatch ? 1 : 0)
    }

    public static func gather(_ inv: Inventory, transport: Transport) async -> LinkReport {
        let outcomes = await fanOut(inv.nodes) { node in
            try await transport.with(node) { s -> NodeLink in
                let peers = inv.nodes.filter { $0.name != node.name }.map(\.interconnectIP)
                let (mtu, reach) = LinkOps.parseReach(try await s.run(LinkOps.reach(interface: inv.interface, peers: peers)))
                return NodeLink(node: node.name, mtu: mtu, peers: reach, gidIndexSet: LinkOps.parseGIDIndex(try await s.run(LinkOps.gidIndex())))
            }
        }
        var report = LinkReport(nodes: [], errors: [])
        for o in outcomes {
            switch o.result {
            case .success(let l): report.nodes.append(l)
            case .failure(let e): report.errors.append((e as? SousFailure)?.message ?? "\(o.node.name): \(e)")
            }
        }
        return report
    }
}
