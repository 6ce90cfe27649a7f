import Foundation

/// What `sous init` reads from one live node.
public struct NodeFacts: Sendable {
    public struct Interface: Sendable, Equatable {
        public var name: String
        public var up: Bool
        public var mtu: Int
        public var ipv4: [(address: String, prefix: Int)]
        public static func == (l: Self, r: Self) -> Bool {
            l.name == r.name && l.up == r.up && l.mtu == r.mtu && l.ipv4.map(\.address) == r.ipv4.map(\.address)
        }
    }
    public var user: String
    public var host: String
    public var port: Int?
    public var hostname = ""
    public var os = ""
    public var gpu: String?
    public var memTotalKB = 0
    public var memAvailableKB = 0
    public var docker = false
    public var sudo = false
    public var interfaces: [Interface] = []
    /// RoCE device → netdev, and whether ibdev2netdev says the port is Up.
    public var roce: [(device: String, netdev: String, up: Bool)] = []

    /// The command that reads a node's facts; `parse` reads its output.
    public static func read() -> RemoteCommand { .shell(script, timeout: .seconds(30)) }

    /// The script whose output `parse` reads (sections separated by a record separator line).
    public static let script = """
    hostname; printf '\\036\\n'
    . /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}"; printf '\\036\\n'
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1; printf '\\036\\n'
    awk '/^MemTotal/ {print $2} /^MemAvailable/ {print $2}' /proc/meminfo; printf '\\036\\n'
    docker version >/dev/null 2>&1 && echo yes || echo no; printf '\\036\\n'
    sudo -n true 2>/dev/null && echo yes || echo no; printf '\\036\\n'
    ip -j addr show; printf '\\036\\n'
    ibdev2netdev 2>/dev/null || true
    """

    public static func parse(_ text: String, user: String, host: String, port: Int?) -> NodeFacts {
        var f = NodeFacts(user: user, host: host, port: port)
        let s = text.components(separatedBy: "\u{1e}\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard s.count >= 8 else { return f }
        f.hostname = s[0]
        f.os = s[1]
        f.gpu = s[2].isEmpty ? nil : s[2]
        let mem = s[3].split(separator: "\n").compactMap { Int($0) }
        if mem.count == 2 { (f.memTotalKB, f.memAvailableKB) = (mem[0], mem[1]) }
        f.docker = s[4] == "yes"
        f.sudo = s[5] == "yes"
        for i in (try? JSONSerialization.jsonObject(with: Data(s[6].utf8)) as? [[String: Any]]) ?? [] {
            let addrs = (i["addr_info"] as? [[String: Any]] ?? []).filter { $0["family"] as? String == "inet" }
                .compactMap { a -> (String, Int)? in (a["local"] as? String).map { ($0, a["prefixlen"] as? Int ?? 32) } }
            f.interfaces.append(Interface(name: i["ifname"] as? String ?? "?", up: i["operstate"] as? String == "UP", mtu: i["mtu"] as? Int ?? 0, ipv4: addrs))
        }
        for line in s[7].split(separator: "\n") {
            // "rocep1s0f1 port 1 ==> enp1s0f1np1 (Up)"
            let w = line.split(separator: " ")
            if w.count >= 6, w[3] == "==>" { f.roce.append((String(w[0]), String(w[4]), w[5] == "(Up)")) }
        }
        return f
    }

    public var isGB10: Bool { gpu?.contains("GB10") ?? false }
}

/// Picks the interconnect from what every node reports.
public enum InitPlanner {
    public struct Choice: Sendable, Equatable {
        public var interface: String
        public var addresses: [String]
        public var ncclIbHca: String?
    }

    static func network(_ address: String, _ prefix: Int) -> UInt32? {
        let p = address.split(separator: ".").compactMap { UInt32($0) }
        guard p.count == 4 else { return nil }
        let v = p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]
        return prefix == 0 ? 0 : v & ~UInt32((1 << (32 - UInt64(prefix))) - 1)
    }

    static let connectX = #"^en[pP][0-9a-z]*s0f[01]np[01]$"#

    /// The interface (same name on every node, up, ConnectX-named or Up in ibdev2netdev) whose IPv4 addresses
    /// share one subnet across all nodes.
    public static func choose(_ nodes: [NodeFacts]) -> Choice? {
        guard let first = nodes.first else { return nil }
        let candidates = first.interfaces.filter { i in
            i.up && !i.ipv4.isEmpty && (i.name.range(of: connectX, options: .regularExpression) != nil || first.roce.contains { $0.netdev == i.name && $0.up })
        }
        for c in candidates {
            for (addr, prefix) in c.ipv4 {
                guard let net = network(addr, prefix) else { continue }
                var addresses = [addr]
                for other in nodes.dropFirst() {
                    guard let i = other.interfaces.first(where: { $0.name == c.name && $0.up }),
                          let match = i.ipv4.first(where: { network($0.address, $0.prefix) == net && $0.prefix == prefix }) else { addresses = []; break }
                    addresses.append(match.address)
                }
                if addresses.count == nodes.count {
                    let devices = first.roce.filter { $0.up }.map(\.device)
                    return Choice(interface: c.name, addresses: addresses, ncclIbHca: devices.isEmpty ? nil : devices.joined(separator: ","))
                }
            }
        }
        return nil
    }

    /// A commented inventory a person can read and edit.
    public static func inventory(_ nodes: [NodeFacts], choice: Choice, head: Int, cluster: String, image: String,
                                 identityFile: String?, knownHosts: String?) -> String {
        let gb10 = nodes.allSatisfy(\.isGB10)
        var out = """
        # Written by `sous init` from the live nodes on \(ISO8601DateFormatter().string(from: Date())). Edit freely.
        cluster: \(cluster)
        image: \(image)   # pin the tag or digest you tested
        port: 8000
        api_key_env: VLLM_API_KEY
        launcher: mp
        \(gb10 ? "hardware: dgx_spark_gb10   # every node reports an NVIDIA GB10" : "# hardware: no known profile matched the GPUs")
        interconnect:
          interface: \(choice.interface)   # up on every node, one subnet
          master_port: 29501

        """
        if let hca = choice.ncclIbHca { out += "  nccl_ib_hca: \(hca)   # RoCE devices that ibdev2netdev reports Up\n" }
        if let knownHosts { out += "known_hosts: \(knownHosts)\n" }
        out += "nodes:\n"
        let ordered = [head] + nodes.indices.filter { $0 != head }
        for (rank, i) in ordered.enumerated() {
            let n = nodes[i]
            let gib = Double(n.memTotalKB) / 1048576
            out += """
              # \(n.hostname): \(n.os); GPU \(n.gpu ?? "none visible"); \(String(format: "%.0f GiB", gib)) memory; docker \(n.docker ? "usable" : "NOT usable without a password"); sudo -n \(n.sudo ? "ok" : "needs a password")
              - name: \(n.hostname)
                host: \(n.host)

            """
            if let p = n.port { out += "    port: \(p)\n" }
            out += "    user: \(n.user)\n"
            if let identityFile { out += "    identity_file: \(identityFile)\n" }
            out += "    interconnect_ip: \(choice.addresses[i])\n    role: \(rank == 0 ? "head" : "worker")\n"
        }
        return out
    }
}
