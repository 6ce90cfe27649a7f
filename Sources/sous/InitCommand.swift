import ArgumentParser
import Foundation
import SousKit

import SSH

struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write an inventory from live nodes: GPU, memory, Docker, sudo, the ConnectX-7 interface and addresses.",
        discussion: """
        Connects to each host (host keys verified; unknown ones accepted only with --accept-new), reads hostname, OS, \
        nvidia-smi, /proc/meminfo, docker, sudo -n, `ip -j addr` and ibdev2netdev, picks the interface that is up on \
        every node with addresses in one subnet, and writes a commented inventory. An existing file is never \
        overwritten without --force: you get a diff instead (exit 1).
        Example: sous init --hosts spark@spark-a.local,spark@spark-b.local --accept-new --write inventory/sparks.yaml
        """
    )

    @Option(help: "Comma-separated user@host[:port], the head first (unless --head).")
    var hosts: String

    @Option(help: "Identity file for every host.")
    var identityFile: String?

    @Option(help: "Name (hostname) of the head; default the first host.")
    var head: String?

    @Option(help: "Cluster name.")
    var cluster = "sparks"

    @Option(help: "Image to pin in the inventory.")
    var image = "vllm/vllm-openai:v0.24.0"

    @Option(help: "Write the inventory here (default: print it).")
    var write: String?

    @Flag(help: "Overwrite an existing --write file.")
    var force = false

    @Flag(help: "Print JSON: what each node has, the interface chosen, the inventory's text and where it was written.")
    var json = false

    @OptionGroup var ssh: SSHOptions

    func run() async throws {
        var nodes: [NodeSpec] = []
        for (i, h) in hosts.split(separator: ",").enumerated() {
            let parts = h.split(separator: "@", maxSplits: 1)
            guard parts.count == 2 else { throw UsageError("`\(h)` is not user@host[:port]") }
            var host = String(parts[1]), port: Int?
            if let colon = host.lastIndex(of: ":"), !host.contains("]"), let p = Int(host[host.index(after: colon)...]) {
                port = p
                host = String(host[..<colon])
            }
            nodes.append(NodeSpec(name: "host\(i + 1)", host: host, port: port, user: String(parts[0]), identityFile: identityFile,
                                  interconnectIP: "0.0.0.0", role: i == 0 ? .head : .worker))
        }
        guard !nodes.isEmpty else { throw UsageError("--hosts is empty") }
        let transport = ssh.transport(defaultKnownHosts: nil)
        let outcomes = await fanOut(nodes) { node in
            try await transport.with(node) { s -> NodeFacts in
                let r = try await s.run(NodeFacts.read())
                return NodeFacts.parse(r.stdoutText, user: node.user, host: node.host, port: node.port)
            }
        }
        var facts: [NodeFacts] = []
        for o in outcomes {
            switch o.result {
            case .success(let f): facts.append(f)
            case .failure(let e): throw e
            }
        }
        for f in facts {
            if !f.docker { Console.warning("\(f.hostname): docker is not usable by \(f.user) without a password (add the user to the docker group)") }
            if !f.sudo { Console.warning("\(f.hostname): sudo asks \(f.user) for a password (sous harden needs sudo -n)") }
        }
        guard let choice = InitPlanner.choose(facts) else {
            let seen = facts.map { f in "\(f.hostname): " + f.interfaces.filter { $0.up && !$0.ipv4.isEmpty }.map { "\($0.name) \($0.ipv4.map(\.address).joined(separator: ","))" }.joined(separator: "; ") }
            throw UsageError("no interface is up with addresses in one subnet on every node (\(seen.joined(separator: " | ")))",
                             hint: "bring the ConnectX-7 port up with a static address on each node (netplan), then run init again")
        }
        let headIndex = head.flatMap { h in facts.firstIndex { $0.hostname == h } } ?? 0
        let text = InitPlanner.inventory(facts, choice: choice, head: headIndex, cluster: cluster, image: image,
                                         identityFile: identityFile, knownHosts: ssh.knownHosts)
        struct Node: Encodable { var hostname, user, host: String; var docker, sudo: Bool }
        struct Report: Encodable { var nodes: [Node]; var interface: String; var addresses: [String]; var inventory: String; var written: String? }
        func report(_ written: String?) -> String {
            encodeJSON(Report(nodes: facts.map { Node(hostname: $0.hostname, user: $0.user, host: $0.host, docker: $0.docker, sudo: $0.sudo) },
                              interface: choice.interface, addresses: choice.addresses, inventory: text, written: written))
        }
        guard let write else { print(json ? report(nil) : text, terminator: ""); return }
        if FileManager.default.fileExists(atPath: write) && !force {
            let tmp = NSTemporaryDirectory() + "sous-init-\(UUID().uuidString).yaml"
            try text.write(toFile: tmp, atomically: true, encoding: .utf8)
            defer { unlink(tmp) }
            let diff = try Local.run("/usr/bin/diff", ["-u", write, tmp], check: false)
            print(diff.output, terminator: "")
            throw UsageError("\(write) exists; not overwritten", hint: "review the diff above, then add --force")
        }
        try text.write(toFile: write, atomically: true, encoding: .utf8)
        if json { print(report(write), terminator: ""); return }
        print("wrote \(write): \(facts.count) nodes, interconnect \(choice.interface) \(choice.addresses.joined(separator: ", "))")
    }
}

struct CheckLinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-link",
        abstract: "From each node, reach every other node's interconnect address; compare MTUs; flag NCCL_IB_GID_INDEX.",
        discussion: "An MTU mismatch (1500 after a firmware update) is the known cause of NCCL handshake hangs. Exit 0 ok, 1 a problem."
    )

    @Option(name: [.customShort("i"), .long], help: "Inventory file.")
    var inventory: String

    @OptionGroup var ssh: SSHOptions

    @Flag(help: "Print JSON: each node's MTU, what it reached, NCCL_IB_GID_INDEX; the errors and the problem count.")
    var json = false

    func run() async throws {
        let (inv, _) = try InventoryReader.load(path: inventory)
        let report = await LinkReport.gather(inv, transport: ssh.transport(for: inv))
        if json {
            print(encodeJSON(report), terminator: "")
            if report.problems > 0 { throw ExitCode(ExitStatus.checkFailed.rawValue) }
            return
        }
        for l in report.nodes {
            print("\(l.node): \(inv.interface) mtu \(l.mtu); " + l.peers.joined(separator: ", "))
            if l.gidIndexSet { Console.warning("\(l.node): NCCL_IB_GID_INDEX is set: the GID table drifts and a pinned index hangs the tensor-parallel handshake; remove it") }
        }
        for e in report.errors { Console.error(e) }
        if report.mtuMismatch {
            print("MTU MISMATCH on \(inv.interface): " + report.nodes.map { "\($0.node) \($0.mtu)" }.joined(separator: ", ") + " (NCCL handshakes hang; set the same MTU on both ends)")
        }
        let problems = report.problems
        print(problems == 0 ? "link ok" : "\(problems) problem\(problems == 1 ? "" : "s")")
        if problems > 0 { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}
