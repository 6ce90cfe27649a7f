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

/// A tensor-parallel group as the inventory names it under `groups:`: its nodes, head first, and optionally the
/// port its head serves the API on. Without `groups:` sous forms groups of consecutive nodes (`Deployment.groups`).
/// The load balancer in front of several tensor-parallel groups (`router:`): vLLM's router (vllm-project/router,
/// `vllm-router`), run as a container on one node, every group's head as a worker.
public struct RouterSpec: Sendable, Equatable {
    /// The node it runs on.
    public var node: String
    /// The one endpoint clients use.
    public var port: Int
    /// A pinned image whose entry point is `vllm-router` (vLLM publishes none: README, "Several groups").
    public var image: String
    /// vllm-router's `--policy`.
    public var policy: String

    public static let policies = ["cache_aware", "round_robin", "random", "power_of_two", "consistent_hash", "sticky_least_loaded"]
}

public struct GroupSpec: Sendable, Equatable {
    public var name: String
    /// Node names, the group's head first.
    public var nodes: [String]
    /// The head's API port; nil: the inventory's `port`.
    public var port: Int?
    /// Where the group was written, for errors found with the recipe.
    public var location: SourceLocation?

    public init(name: String, nodes: [String], port: Int? = nil, location: SourceLocation? = nil) {
        self.name = name
        self.nodes = nodes
        self.port = port
        self.location = location
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
    /// The groups the file names (`groups:`); nil: formed from the recipe's tensor-parallel size.
    public var groups: [GroupSpec]? = nil
    /// The router in front of the groups (`router:`); nil: none.
    public var router: RouterSpec? = nil
    /// Where each setting was written (keyed by its key), for errors found with the recipe.
    public var locations: [String: SourceLocation] = [:]

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
                              "interconnect", "hf_cache", "known_hosts", "shm_size", "groups", "router"]
    static let nodeKeys = ["name", "host", "port", "user", "identity_file", "interconnect_ip", "role"]
    static let interconnectKeys = ["interface", "master_port", "nccl_ib_hca"]
    static let groupKeys = ["name", "nodes", "port"]
    static let routerKeys = ["node", "port", "image", "policy"]
    /// More nodes than any tensor-parallel group sous renders; a file with more is refused before its nodes are read.
    public static let maxNodes = 1024

    /// A node as read, with where its name and addresses were written (for errors about two nodes).
    struct ReadNode {
        var spec: NodeSpec
        var path: String
        var name: YValue?, host: YValue?, ip: YValue?
    }

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
        if let nodesValue = map.required("nodes", what: "the machines, head first"), let list = nodesValue.sequence() {
            guard list.count <= maxNodes else {
                sink.error(nodesValue.node, "nodes", "\(list.count) nodes: sous renders at most \(maxNodes)", hint: "one inventory per cluster")
                throw ConfigErrors(sink.issues)
            }
            for (i, item) in list.enumerated() {
                if let m = item.mapping(allowed: nodeKeys) { nodeValues.append((m, i)) }
            }
        }
        let nodes = nodeValues.compactMap { readNode($0.0, index: $0.1, sink: sink) }
        return try finish(settings: map, nodes: nodes, nodeCount: nodeValues.count, file: file, sink: sink)
    }

    /// Maps Ansible's host variables onto sous's node keys.
    static let ansibleNodeKeys: [String: String] = [
        "ansible_host": "host", "ansible_port": "port", "ansible_user": "user",
        "ansible_ssh_private_key_file": "identity_file", "interconnect_ip": "interconnect_ip", "role": "role",
    ]

    /// An Ansible YAML inventory: `all:` with `vars:`, `hosts:` and `children:`; sous settings are group vars,
    /// node facts are host vars. Other variables belong to other playbooks and are left alone.
    ///
    /// Groups are walked once each: YAML aliases can make one group the child of many (a kilobyte of `children:
    /// *a` lines names billions of paths), and a group already walked adds nothing. A host listed in several
    /// groups is the first one's.
    static func parseAnsible(_ root: YValue, file: String, sink: IssueSink) throws(ConfigErrors) -> (Inventory, [ConfigIssue]) {
        var settings: [(String, YValue, Node)] = []
        var hosts: [(name: String, keyNode: Node, vars: [(String, YValue, Node)])] = []
        var hostNames = Set<String>()
        /// Walked groups by where they are written: an alias composes to a copy of its anchor's node, mark and all.
        var walked = Set<String>()
        var tooMany = false

        func walk(_ group: YValue) {
            if let mark = group.node.mark, !walked.insert("\(mark.line):\(mark.column)").inserted { return }
            guard !tooMany, let g = group.mapping(allowed: ["vars", "hosts", "children"]) else { return }
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
                for e in hs.entries where !hostNames.contains(e.key) {
                    guard hosts.count < maxNodes else {
                        sink.error(e.keyNode, e.value.path, "more than \(maxNodes) hosts: sous renders at most \(maxNodes) nodes", hint: "one inventory per cluster")
                        tooMany = true
                        return
                    }
                    hostNames.insert(e.key)
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
        if tooMany { throw ConfigErrors(sink.issues) }

        var nodes: [ReadNode] = []
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
            if let n = readNode(m, index: i, sink: sink) { nodes.append(n) }
        }
        let settingsMap = YMap(node: all.node, path: "all.vars", sink: sink, entries: settings.map { ($0.0, $0.1, $0.2) })
        return try finish(settings: settingsMap, nodes: nodes, nodeCount: hosts.count, file: file, sink: sink)
    }

    static func readNode(_ m: YMap, index: Int, sink: IssueSink) -> ReadNode? {
        let name = m.required("name")?.string()
        if let name, !name.matchesWhole("[A-Za-z0-9][A-Za-z0-9._-]*") {
            sink.error(m["name"]?.node, "\(m.path).name", "node names are letters, digits, '.', '_' or '-'")
        }
        let host = m.required("host", what: "address or DNS name sous connects to")?.string()
        if let host, Address.ipBytes(host) == nil, !Address.isHostName(host) {
            sink.error(m["host"]?.node, "\(m.path).host", "`\(host)` is not a host name or address",
                       hint: "a DNS name (letters, digits, '-' and '.') or an IPv4 or IPv6 address, without brackets, zone or port; the user goes in `user:`, the port in `port:`")
        }
        let port = m["port"]?.int(range: 1...65535)
        let user = m.required("user", what: "the login user (the same on every node)")?.string()
        if let user, !user.matchesWhole("[a-z_][a-z0-9_.-]{0,31}") {
            sink.error(m["user"]?.node, "\(m.path).user", "`\(user)` is not a login name", hint: "lowercase letters, digits, '_', '.' or '-', starting with a letter or '_'")
        }
        let identity = m["identity_file"]?.string()
        let ipNode = m.required("interconnect_ip", what: "this node's address on the ConnectX-7 link")
        let ip = ipNode?.string()
        if let ip, Address.ipBytes(ip) == nil {
            sink.error(ipNode?.node, "\(m.path).interconnect_ip", "`\(ip)` is not an IP address",
                       hint: "this node's IPv4 or IPv6 address on the interconnect, e.g. 192.168.100.10 (no zone, brackets or port)")
        }
        var role: NodeSpec.Role = index == 0 ? .head : .worker
        if let r = m["role"]?.string() {
            if let parsed = NodeSpec.Role(rawValue: r) { role = parsed } else {
                sink.error(m["role"]?.node, "\(m.path).role", "`\(r)` is not a role", hint: "head or worker")
            }
        }
        guard let name, let host, let user, let ip else { return nil }
        return ReadNode(spec: NodeSpec(name: name, host: host, port: port, user: user, identityFile: identity, interconnectIP: ip, role: role),
                        path: m.path, name: m["name"], host: m["host"], ip: ipNode)
    }

    /// Every image reference Docker accepts, `[registry[:port]/]path[:tag][@sha256:digest]`, and nothing else: a
    /// reference is a word of `docker run` after the options, so one starting with `-` would be read as one.
    /// A registry is the first component when it has a `.` or a port, or is `localhost`.
    static let imagePattern = #"(?:(?:localhost|\#(registryLabel)(?:\.\#(registryLabel))+)(?::[0-9]{1,5})?/|\#(registryLabel):[0-9]{1,5}/)?"#
        + #"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"#
        + #"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"#

    static let registryLabel = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"

    /// Checks an image reference (the inventory's `image`, or `--image`): well-formed and pinned; a tag beside a
    /// digest is a warning, since Docker then runs the digest and ignores the tag.
    static func checkImage(_ image: String, at node: Node?, key: String = "image", sink: IssueSink) {
        if !image.matchesWhole(imagePattern) {
            sink.error(node, key, "`\(image)` is not an image reference",
                       hint: "[registry/]repository:tag or …@sha256:<64 hex digits>, e.g. vllm/vllm-openai:v0.24.0")
        } else if !ImageRef.isPinned(image) {
            sink.error(node, key, "`\(image)` is not pinned: two nodes pulling a moving tag can get different engines",
                       hint: "use an exact tag (vllm/vllm-openai:v0.24.0) or a digest (…@sha256:…)")
        } else if image.contains("@"), let tag = ImageRef.tag(of: image) {
            sink.warning(node, key, "the tag `\(tag)` is ignored: Docker runs the image the digest names, whatever the tag says now",
                         hint: "drop `:\(tag)`, or keep it only as a note (the vLLM version sous assumes is read from it; set vllm_version: to state it)")
        }
    }

    /// An environment variable's name, as the shell and Docker take it.
    static let envNamePattern = "[A-Za-z_][A-Za-z0-9_]*"

    /// Two nodes with one name, one management address (and port), or one interconnect address: an error at the
    /// later one, naming the line of the first. Linear: each key goes in a dictionary once.
    static func checkDuplicates(_ nodes: [ReadNode], sink: IssueSink) {
        func check(_ key: String, _ label: String, _ what: (ReadNode) -> (identity: String, shown: String, value: YValue?)) {
            var first: [String: ReadNode] = [:]
            for n in nodes {
                let (identity, shown, value) = what(n)
                guard let earlier = first[identity] else { first[identity] = n; continue }
                let whose = key == "name" ? earlier.path : earlier.spec.name
                let line = what(earlier).value?.location.map { " (line \($0.line))" } ?? ""
                sink.error(value?.node, "\(n.path).\(key)", "\(shown) is also the \(label) of \(whose)\(line)")
            }
        }
        check("name", "name", { ($0.spec.name, "`\($0.spec.name)`", $0.name) })
        check("host", "management address", { n in
            ("\(Address.identity(n.spec.host)) \(n.spec.port ?? 0)", n.spec.host + (n.spec.port.map { " port \($0)" } ?? ""), n.host)
        })
        check("interconnect_ip", "address", { (Address.identity($0.spec.interconnectIP), $0.spec.interconnectIP, $0.ip) })
    }

    static func finish(settings map: YMap, nodes read: [ReadNode], nodeCount: Int, file: String, sink: IssueSink) throws(ConfigErrors) -> (Inventory, [ConfigIssue]) {
        let nodes = read.map(\.spec)
        let cluster = map.required("cluster", what: "a short name for this cluster")?.string()
        if let cluster, !cluster.matchesWhole("[a-z0-9][a-z0-9._-]*") {
            sink.error(map["cluster"]?.node, "cluster", "must be lowercase letters, digits, '.', '_' or '-'")
        }
        let image = map.required("image", what: "a pinned tag or digest, e.g. vllm/vllm-openai:v0.24.0")?.string()
        if let image { checkImage(image, at: map["image"]?.node, sink: sink) }
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
                if !v.matchesWhole(envNamePattern) {
                    sink.error(node.node, "api_key_env", "must name an environment variable (the key itself never goes in a file sous reads)")
                }
                apiKeyEnv = v
            }
        }
        var hfTokenEnv = "HF_TOKEN"
        if let v = map["hf_token_env"]?.string() {
            if !v.matchesWhole(envNamePattern) {
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
            if let i = interface, !i.matchesWhole("[A-Za-z0-9._-]{1,15}") {
                sink.error(ic["interface"]?.node, "interconnect.interface", "`\(i)` is not a network interface name")
            }
            masterPort = ic["master_port"]?.int(range: 1...65535) ?? 29501
            hca = ic["nccl_ib_hca"]?.string()
            if let h = hca, !h.matchesWhole("=?=?[A-Za-z0-9_,:^-]+") {
                sink.error(ic["nccl_ib_hca"]?.node, "interconnect.nccl_ib_hca", "`\(h)` is not an NCCL_IB_HCA list (e.g. rocep1s0f1,roceP2p1s0f1)")
            }
        }
        let hfCache = map["hf_cache"]?.string()
        if let h = hfCache, !h.matchesWhole("/[^:,]*") {
            sink.error(map["hf_cache"]?.node, "hf_cache", "`\(h)` must be an absolute path on the nodes, without ':' or ','",
                       hint: "it becomes the source of `docker run -v SOURCE:/root/.cache/huggingface`, where ':' and ',' separate options")
        }
        let knownHosts = map["known_hosts"]?.string()
        let shm = map["shm_size"]?.string() ?? "10g"
        if !shm.matchesWhole("[0-9]{1,12}[bkmg]?") {
            sink.error(map["shm_size"]?.node, "shm_size", "`\(shm)` is not a Docker size like 10g")
        }

        if nodeCount == 0 && !sink.hasErrors { sink.error(map.node, "nodes", "no nodes") }
        checkDuplicates(read, sink: sink)
        let heads = nodes.filter { $0.role == .head }
        if !nodes.isEmpty, heads.count != 1 {
            sink.error(map.node, "nodes", "exactly one node must have role head (found \(heads.count))",
                       hint: "the first node is the head unless another says `role: head`")
        }
        let users = Set(nodes.map(\.user))
        if users.count > 1 {
            sink.warning(nil, "nodes", "the nodes log in as different users (\(users.sorted().joined(separator: ", "))); the field guides use the same user everywhere")
        }

        let groups = map["groups"].flatMap { readGroups($0, nodes: nodes, port: port, sink: sink) }
        let router = map["router"].flatMap { readRouter($0, nodes: nodes, port: port, groups: groups, sink: sink) }

        guard !sink.hasErrors, let cluster, let image, let interface else { throw ConfigErrors(sink.issues) }
        var locations: [String: SourceLocation] = [:]
        for entry in map.entries { locations[entry.key] = entry.value.location }
        let inv = Inventory(file: file, cluster: cluster, image: image, vllmVersion: version, port: port, apiKeyEnv: apiKeyEnv,
                            hfTokenEnv: hfTokenEnv, launcher: launcher, hardware: hardware, interface: interface, masterPort: masterPort, ncclIbHca: hca,
                            hfCache: hfCache, knownHosts: knownHosts, shmSize: shm, nodes: nodes, groups: groups, router: router, locations: locations)
        return (inv, sink.issues)
    }

    /// `router:`: `{node, port, image, policy}`. The node must be one of `nodes:`; the port must not be an API
    /// port a group's head serves on that node (the groups' ports are known only with `groups:`; formed groups
    /// serve on `port`).
    static func readRouter(_ value: YValue, nodes: [NodeSpec], port: Int, groups: [GroupSpec]?, sink: IssueSink) -> RouterSpec? {
        guard let m = value.mapping(allowed: routerKeys) else { return nil }
        let nodeName = m.required("node", what: "the name of the node it runs on")?.string()
        if let n = nodeName, !nodes.contains(where: { $0.name == n }) {
            sink.error(m["node"]?.node, "router.node", "no node named `\(n)` in `nodes:`",
                       hint: didYouMean(n, in: nodes.map(\.name)).map { "did you mean `\($0)`?" } ?? "nodes: \(nodes.map(\.name).joined(separator: ", "))")
        }
        let routerPort = m["port"]?.int(range: 1...65535) ?? 8080
        let image = m.required("image", what: "a pinned image whose entry point is vllm-router, e.g. registry.example/vllm-router:0.1.17")?.string()
        if let image { checkImage(image, at: m["image"]?.node, key: "router.image", sink: sink) }
        let policy = m["policy"]?.string() ?? "cache_aware"
        if !RouterSpec.policies.contains(policy) {
            sink.error(m["policy"]?.node, "router.policy", "`\(policy)` is not a vllm-router policy",
                       hint: didYouMean(policy, in: RouterSpec.policies).map { "did you mean `\($0)`?" } ?? "one of \(RouterSpec.policies.joined(separator: ", "))")
        }
        if let n = nodeName {
            let headPorts = groups.map { gs in gs.filter { $0.nodes.first == n }.map { $0.port ?? port } } ?? [port]
            if headPorts.contains(routerPort) {
                sink.error(m["port"]?.node ?? m.node, "router.port", "\(routerPort) is the port a group's head serves its API on, on \(n)",
                           hint: "give the router its own `port:` (default 8080)")
            }
        }
        guard let nodeName, let image else { return nil }
        return RouterSpec(node: nodeName, port: routerPort, image: image, policy: policy)
    }

    /// `groups:`: a list of `{name, nodes: [head, worker…], port}`. Every node is in exactly one group; the
    /// inventory's head (the node holding the cluster lock and journal) heads the first group; two heads on one
    /// management address need two ports. The group size against the recipe is checked by `Deployment.make`.
    static func readGroups(_ value: YValue, nodes: [NodeSpec], port: Int, sink: IssueSink) -> [GroupSpec]? {
        guard let list = value.sequence() else { return nil }
        if list.isEmpty {
            sink.error(value.node, "groups", "an empty list", hint: "name each tensor-parallel group, or remove `groups:` to form groups of consecutive nodes")
            return nil
        }
        let known = Set(nodes.map(\.name))
        var groups: [GroupSpec] = []
        var names: [String: YValue] = [:]
        var member: [String: (group: String, value: YValue)] = [:]
        for item in list {
            guard let m = item.mapping(allowed: groupKeys) else { continue }
            let nameValue = m.required("name", what: "a short name for this group")
            let name = nameValue?.string()
            if let name, !name.matchesWhole("[A-Za-z0-9][A-Za-z0-9._-]*") {
                sink.error(nameValue?.node, "\(m.path).name", "group names are letters, digits, '.', '_' or '-'")
            }
            if let name, let nameValue {
                if let earlier = names[name] {
                    sink.error(nameValue.node, "\(m.path).name", "`\(name)` is also the name of \(earlier.path.dropLast(5))\(earlier.location.map { " (line \($0.line))" } ?? "")")
                } else { names[name] = nameValue }
            }
            var members: [String] = []
            if let list = m.required("nodes", what: "the group's node names, its head first")?.sequence() {
                if list.isEmpty { sink.error(m["nodes"]?.node, "\(m.path).nodes", "an empty list") }
                for v in list {
                    guard let n = v.string() else { continue }
                    if !known.contains(n) {
                        sink.error(v.node, v.path, "no node named `\(n)` in `nodes:`",
                                   hint: didYouMean(n, in: Array(known)).map { "did you mean `\($0)`?" } ?? "nodes: \(nodes.map(\.name).joined(separator: ", "))")
                    } else if let earlier = member[n] {
                        sink.error(v.node, v.path, "`\(n)` is already in group \(earlier.group)\(earlier.value.location.map { " (line \($0.line))" } ?? "")",
                                   hint: "a node runs one rank of one group")
                    } else {
                        member[n] = (name ?? m.path, v)
                        members.append(n)
                    }
                }
            }
            let groupPort = m["port"]?.int(range: 1...65535)
            if let name { groups.append(GroupSpec(name: name, nodes: members, port: groupPort, location: sink.location(item.node))) }
        }
        for n in nodes where member[n.name] == nil {
            sink.error(value.node, "groups", "node `\(n.name)` is in no group", hint: "add it to a group's `nodes:`, or remove it from `nodes:`")
        }
        if let head = nodes.first(where: { $0.role == .head }), let first = groups.first?.nodes.first, first != head.name {
            sink.error(list.first?.node, "groups[0].nodes[0]", "the first group must be headed by `\(head.name)`, the inventory's head (it holds the cluster lock and the journal); found `\(first)`",
                       hint: "list \(head.name) first in the first group, or give `role: head` to \(first)")
        }
        // Two heads on one management address (and port) would serve on one socket.
        var endpoints: [String: String] = [:]
        let byName = Dictionary(uniqueKeysWithValues: nodes.map { ($0.name, $0) })
        for (i, g) in groups.enumerated() {
            guard let headName = g.nodes.first, let head = byName[headName] else { continue }
            let key = "\(Address.identity(head.host)) \(g.port ?? port)"
            if let other = endpoints[key] {
                sink.error(list[i].node, "groups[\(i)].port", "the heads of \(other) and \(g.name) would both serve on \(head.host):\(g.port ?? port)",
                           hint: "give one of the groups its own `port:`")
            } else { endpoints[key] = g.name }
        }
        return sink.hasErrors ? nil : groups
    }
}
