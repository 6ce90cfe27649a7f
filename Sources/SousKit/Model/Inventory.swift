import Foundation
import Yams

/// One machine of the cluster.
public struct NodeSpec: Sendable, Equatable {
    public enum Role: String, Sendable { case head, worker }
    public var name: String
    /// Management address sous connects to over SSH.
    public var host: String
    /// nil: ~/.ssh/config's Port, else 22.
    public var port: Int?
    public var user: String
    public var identityFile: String?
    /// This node's address on the interconnect (VLLM_HOST_IP); the head's is the rendezvous address.
    public var interconnectIP: String
    public var role: Role

    public init(name: String, host: String, port: Int? = nil, user: String, identityFile: String? = nil,
                interconnectIP: String, role: Role) {
        self.name = name
        self.host = host
        self.port = port
        self.user = user
        self.identityFile = identityFile
        self.interconnectIP = interconnectIP
        self.role = role
    }
}

/// How the tensor-parallel ranks find each other.
public enum Launcher: String, Sendable {
    /// vLLM's multiprocessing executor: every node runs `vllm serve --nnodes … --node-rank …`; rank > 0 is headless.
    case mp
    /// A Ray cluster across the nodes; `vllm serve --distributed-executor-backend ray` on the head (old images).
    case ray
}

/// The nodes and the cluster-wide settings.
public struct Inventory: Sendable {
    public var file: String
    public var cluster: String
    public var image: String
    /// The vLLM version inside the image: stated, or read from the image tag.
    public var vllmVersion: VLLMVersion?
    public var port: Int
    /// Name of the local environment variable holding the API key; nil disables auth.
    public var apiKeyEnv: String?
    /// Name of the local environment variable holding a Hugging Face token, for gated models.
    public var hfTokenEnv: String
    public var launcher: Launcher
    public var hardware: String?
    public var interface: String
    public var masterPort: Int
    public var ncclIbHca: String?
    /// Hugging Face cache on the nodes; nil means each user's ~/.cache/huggingface.
    public var hfCache: String?
    public var knownHosts: String?
    public var shmSize: String
    public var nodes: [NodeSpec]

    public var head: NodeSpec { nodes.first { $0.role == .head }! }
    /// Ranks: the head is 0, workers follow in file order.
    public var ranked: [(rank: Int, node: NodeSpec)] {
        ([head] + nodes.filter { $0.role == .worker }).enumerated().map { ($0.offset, $0.element) }
    }
    public var profile: HardwareProfile? { hardware.flatMap { HardwareProfile.known[$0] } }
    public var gpusPerNode: Int { profile?.gpusPerNode ?? 1 }
    /// A node's memory by the hardware profile (128 GiB when none is named), for checks made without a node.
    public var profileMemoryBytes: Int { (profile?.memoryGiB ?? 128) << 30 }

    /// The HF cache directory on a node.
    public func hfCache(on node: NodeSpec) -> String {
        hfCache ?? (node.user == "root" ? "/root/.cache/huggingface" : "/home/\(node.user)/.cache/huggingface")
    }
}

/// Reads inventories: sous's own format, or an Ansible YAML inventory.
public enum InventoryReader {
    static let settingKeys = ["cluster", "image", "vllm_version", "port", "api_key_env", "hf_token_env", "launcher", "hardware",
                              "interconnect", "hf_cache", "known_hosts", "shm_size"]
    static let nodeKeys = ["name", "host", "port", "user", "identity_file", "interconnect_ip", "role"]
    static let interconnectKeys = ["interface", "master_port", "nccl_ib_hca"]

    /// Loads a file; `directory` resolves a relative path without changing how the file is named in messages.
    public static func load(path: String, relativeTo directory: String? = nil) throws(ConfigErrors) -> (Inventory, [ConfigIssue]) {
        let sink = IssueSink(file: path)
        let resolved = path.hasPrefix("/") ? path : directory.map { "\($0)/\(path)" } ?? path
        guard let text = readText(resolved, sink: sink) else { throw ConfigErrors(sink.issues) }
        return try parse(text, file: path, sink: sink)
    }

    public static func parse(_ text: String, file: String) throws(ConfigErrors) -> (Inventory, [ConfigIssue]) {
        try parse(text, file: file, sink: IssueSink(file: file))
    }

    static func parse(_ text: String, file: String, sink: IssueSink) throws(ConfigErrors) -> (Inventory, [ConfigIssue]) {
        guard let root = parseYAML(text, sink: sink) else { throw ConfigErrors(sink.issues) }
        if case .mapping(let m) = root.node, m.keys.contains(where: { $0.scalar?.string == "all" }),
           !m.keys.contains(where: { $0.scalar?.string == "nodes" }) {
            return try parseAnsible(root, file: file, sink: sink)
        }
        guard let map = root.mapping(allowed: settingKeys + ["nodes"]) else { throw ConfigErrors(sink.issues) }
        var nodeValues: [(YMap, Int)] = []
        if let list = map.required("nodes", what: "the machines, head first")?.sequence() {
            for (i, item) in list.enumerated() {
                if let m = item.mapping(allowed: nodeKeys) { nodeValues.append((m, i)) }
            }
        }
        let nodes = nodeValues.compactMap { readNode($0.0, index: $0.1, names: nodeKeys, sink: sink) }
        return try finish(settings: map, nodes: nodes, nodeCount: nodeValues.count, file: file, sink: sink)
    }

    /// Maps Ansible's host variables onto sous's node keys.
    static let ansibleNodeKeys: [String: String] = [
        "ansible_host": "host", "ansible_port": "port", "ansible_user": "user",
        "ansible_ssh_private_key_file": "identity_file", "interconnect_ip": "interconnect_ip", "role": "role",
    ]

    /// An Ansible YAML inventory: `all:` with `vars:`, `hosts:` and `children:`; sous settings are group vars,
    /// node facts are host vars. Other variables belong to other playbooks and are left alone.
    static func parseAnsible(_ root: YValue, file: String, sink: IssueSink) throws(ConfigErrors) -> (Inventory, [ConfigIssue]) {
        var settings: [(String, YValue, Node)] = []
        var hosts: [(name: String, keyNode: Node, vars: [(String, YValue, Node)])] = []

        func walk(_ group: YValue) {
            guard let g = group.mapping(allowed: ["vars", "hosts", "children"]) else { return }
            if let vars = g["vars"]?.mapping(allowed: nil) {
                for e in vars.entries {
                    if settingKeys.contains(e.key) {
                        settings.removeAll { $0.0 == e.key }
                        settings.append((e.key, e.value, e.keyNode))
                    } else if !e.key.hasPrefix("ansible_"), let guess = didYouMean(e.key, in: settingKeys) {
                        sink.warning(e.keyNode, e.value.path, "not a sous setting; did you mean `\(guess)`?")
                    }
                }
            }
            if let hs = g["hosts"]?.mapping(allowed: nil) {
                for e in hs.entries where !hosts.contains(where: { $0.name == e.key }) {
                    var vars: [(String, YValue, Node)] = []
                    if !e.value.isNull, let hv = e.value.mapping(allowed: nil) {
                        vars = hv.entries.map { ($0.key, $0.value, $0.keyNode) }
                    }
                    hosts.append((e.key, e.keyNode, vars))
                }
            }
            if let children = g["children"]?.mapping(allowed: nil) {
                for e in children.entries where !e.value.isNull { walk(e.value) }
            }
        }
        guard let top = root.mapping(allowed: nil), let all = top["all"] else { throw ConfigErrors(sink.issues) }
        walk(all)

        var nodes: [NodeSpec] = []
        for (i, h) in hosts.enumerated() {
            var entries: [(key: String, value: YValue, keyNode: Node)] = [("name", YValue(node: h.keyNode, path: "hosts.\(h.name)", sink: sink), h.keyNode)]
            for (k, v, kn) in h.vars {
                if let mapped = ansibleNodeKeys[k] { entries.append((mapped, v, kn)) }
                else if k == "host" || k == "user" { sink.warning(kn, v.path, "sous reads ansible_\(k) in an Ansible inventory") }
            }
            if !entries.contains(where: { $0.key == "host" }) {
                entries.append(("host", YValue(node: h.keyNode, path: "hosts.\(h.name)", sink: sink), h.keyNode))
            }
            let m = YMap(node: h.keyNode, path: "all.hosts.\(h.name)", sink: sink, entries: entries)
            if let n = readNode(m, index: i, names: nodeKeys, sink: sink, defaultUser: nil) { nodes.append(n) }
        }
        let settingsMap = YMap(node: all.node, path: "all.vars", sink: sink, entries: settings.map { ($0.0, $0.1, $0.2) })
        return try finish(settings: settingsMap, nodes: nodes, nodeCount: hosts.count, file: file, sink: sink)
    }

    static func readNode(_ m: YMap, index: Int, names: [String], sink: IssueSink, defaultUser: String? = nil) -> NodeSpec? {
        let name = m.required("name")?.string()
        if let name, name.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]*$", options: .regularExpression) == nil {
            sink.error(m["name"]?.node, "\(m.path).name", "node names are letters, digits, '.', '_' or '-'")
        }
        let host = m.required("host", what: "address or DNS name sous connects to")?.string()
        if let host, host.isEmpty || host.contains(where: { $0.isWhitespace || $0 == "@" }) {
            sink.error(m["host"]?.node, "\(m.path).host", "`\(host)` is not a host name or address (put the user in `user:`)")
        }
        let port = m["port"]?.int(range: 1...65535)
        let user = m.required("user", what: "the login user (the same on every node)")?.string()
        if let user, user.range(of: "^[a-z_][a-z0-9_.-]*$", options: .regularExpression) == nil {
            sink.error(m["user"]?.node, "\(m.path).user", "`\(user)` is not a login name")
        }
        let identity = m["identity_file"]?.string()
        let ipNode = m.required("interconnect_ip", what: "this node's address on the ConnectX-7 link")
        let ip = ipNode?.string()
        if let ip, !isIPv4(ip) && !ip.contains(":") {
            sink.error(ipNode?.node, "\(m.path).interconnect_ip", "`\(ip)` is not an IP address")
        }
        var role: NodeSpec.Role = index == 0 ? .head : .worker
        if let r = m["role"]?.string() {
            if let parsed = NodeSpec.Role(rawValue: r) { role = parsed } else {
                sink.error(m["role"]?.node, "\(m.path).role", "`\(r)` is not a role", hint: "head or worker")
            }
        }
        guard let name, let host, let user, let ip else { return nil }
        return NodeSpec(name: name, host: host, port: port, user: user, identityFile: identity, interconnectIP: ip, role: role)
    }

    static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in p.count <= 3 && !p.isEmpty && p.allSatisfy(\.isNumber) && Int(p)! <= 255 }
    }

    static func finish(settings map: YMap, nodes: [NodeSpec], nodeCount: Int, file: String, sink: IssueSink) throws(ConfigErrors) -> (Inventory, [ConfigIssue]) {
        let cluster = map.required("cluster", what: "a short name for this cluster")?.string()
        if let cluster, cluster.range(of: "^[a-z0-9][a-z0-9._-]*$", options: .regularExpression) == nil {
            sink.error(map["cluster"]?.node, "cluster", "must be lowercase letters, digits, '.', '_' or '-'")
        }
        let image = map.required("image", what: "a pinned tag or digest, e.g. vllm/vllm-openai:v0.24.0")?.string()
        if let image {
            if image.isEmpty || image.contains(where: { $0.isWhitespace }) {
                sink.error(map["image"]?.node, "image", "`\(image)` is not an image reference")
            } else if !ImageRef.isPinned(image) {
                sink.error(map["image"]?.node, "image", "`\(image)` is not pinned: two nodes pulling a moving tag can get different engines",
                           hint: "use an exact tag (vllm/vllm-openai:v0.24.0) or a digest (…@sha256:…)")
            }
        }
        var version: VLLMVersion?
        if let v = map["vllm_version"]?.string() {
            version = VLLMVersion(v)
            if version == nil { sink.error(map["vllm_version"]?.node, "vllm_version", "`\(v)` is not a version like 0.24.0") }
        } else if let image {
            version = VLLMVersion.fromImage(image)
            if version == nil, ImageRef.isPinned(image) {
                sink.warning(map["image"]?.node, "image", "cannot tell the vLLM version from `\(image)`; parser names are checked against the newest release sous knows",
                             hint: "add `vllm_version: X.Y.Z`")
            }
        }
        let port = map["port"]?.int(range: 1...65535) ?? 8000
        var apiKeyEnv: String? = "VLLM_API_KEY"
        if let node = map.entries.first(where: { $0.key == "api_key_env" })?.value {
            if node.isNull {
                apiKeyEnv = nil
                sink.warning(node.node, "api_key_env", "no API key: every route of the endpoint is open to anyone who can reach it")
            } else if let v = node.string() {
                if v.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) == nil {
                    sink.error(node.node, "api_key_env", "must name an environment variable (the key itself never goes in a file sous reads)")
                }
                apiKeyEnv = v
            }
        }
        var hfTokenEnv = "HF_TOKEN"
        if let v = map["hf_token_env"]?.string() {
            if v.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) == nil {
                sink.error(map["hf_token_env"]?.node, "hf_token_env", "must name an environment variable (the token itself never goes in a file sous reads)")
            }
            hfTokenEnv = v
        }
        var launcher = Launcher.mp
        if let l = map["launcher"]?.string() {
            if let parsed = Launcher(rawValue: l) { launcher = parsed } else {
                sink.error(map["launcher"]?.node, "launcher", "`\(l)` is not a launcher", hint: "mp (default) or ray (images before vLLM 0.11.1)")
            }
        }
        let hardware = map["hardware"]?.string()
        if let hardware, HardwareProfile.known[hardware] == nil {
            sink.error(map["hardware"]?.node, "hardware", "unknown hardware profile `\(hardware)`",
                       hint: didYouMean(hardware, in: Array(HardwareProfile.known.keys)).map { "did you mean `\($0)`?" }
                        ?? "known: \(HardwareProfile.known.keys.sorted().joined(separator: ", "))")
        }
        var interface: String?, masterPort = 29501, hca: String?
        if let ic = map.required("interconnect", what: "interface, master_port, nccl_ib_hca")?.mapping(allowed: interconnectKeys) {
            interface = ic.required("interface", what: "the ConnectX-7 netdev that is up, e.g. enp1s0f1np1")?.string()
            if let i = interface, i.range(of: "^[A-Za-z0-9._-]{1,15}$", options: .regularExpression) == nil {
                sink.error(ic["interface"]?.node, "interconnect.interface", "`\(i)` is not a network interface name")
            }
            masterPort = ic["master_port"]?.int(range: 1...65535) ?? 29501
            hca = ic["nccl_ib_hca"]?.string()
            if let h = hca, h.range(of: "^=?=?[A-Za-z0-9_,:^-]+$", options: .regularExpression) == nil {
                sink.error(ic["nccl_ib_hca"]?.node, "interconnect.nccl_ib_hca", "`\(h)` is not an NCCL_IB_HCA list (e.g. rocep1s0f1,roceP2p1s0f1)")
            }
        }
        let hfCache = map["hf_cache"]?.string()
        if let h = hfCache, !h.hasPrefix("/") || h.contains("\n") {
            sink.error(map["hf_cache"]?.node, "hf_cache", "must be an absolute path on the nodes")
        }
        let knownHosts = map["known_hosts"]?.string()
        let shm = map["shm_size"]?.string() ?? "10g"
        if shm.range(of: "^[0-9]+[bkmg]?$", options: .regularExpression) == nil {
            sink.error(map["shm_size"]?.node, "shm_size", "`\(shm)` is not a Docker size like 10g")
        }

        if nodeCount == 0 && !sink.hasErrors { sink.error(map.node, "nodes", "no nodes") }
        var seen: [String: Int] = [:]
        for (i, n) in nodes.enumerated() {
            if let j = seen[n.name] { sink.error(nil, "nodes[\(i)].name", "`\(n.name)` is also the name of nodes[\(j)]") }
            seen[n.name] = i
        }
        for (i, n) in nodes.enumerated() {
            if let j = nodes[..<i].firstIndex(where: { $0.interconnectIP == n.interconnectIP }) {
                sink.error(nil, "nodes[\(i)].interconnect_ip", "\(n.interconnectIP) is also the address of \(nodes[j].name)")
            }
        }
        let heads = nodes.filter { $0.role == .head }
        if !nodes.isEmpty, heads.count != 1 {
            sink.error(map.node, "nodes", "exactly one node must have role head (found \(heads.count))",
                       hint: "the first node is the head unless another says `role: head`")
        }
        let users = Set(nodes.map(\.user))
        if users.count > 1 {
            sink.warning(nil, "nodes", "the nodes log in as different users (\(users.sorted().joined(separator: ", "))); the field guides use the same user everywhere")
        }

        guard !sink.hasErrors, let cluster, let image, let interface else { throw ConfigErrors(sink.issues) }
        let inv = Inventory(file: file, cluster: cluster, image: image, vllmVersion: version, port: port, apiKeyEnv: apiKeyEnv,
                            hfTokenEnv: hfTokenEnv, launcher: launcher, hardware: hardware, interface: interface, masterPort: masterPort, ncclIbHca: hca,
                            hfCache: hfCache, knownHosts: knownHosts, shmSize: shm, nodes: nodes)
        return (inv, sink.issues)
    }
}
