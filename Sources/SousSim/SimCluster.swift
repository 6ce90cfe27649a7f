import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// Where a simulation keeps its files, and what it created.
public struct SimLayout: Sendable {
    public static let range = "10.213.0.0/16"
    public static let bridge = "sousbr0"
    public static let user = "sous"
    public var dir: String
    public init(dir: String) { self.dir = dir }

    public func nodeName(_ i: Int) -> String { "spark-\(i)" }
    public func namespace(_ name: String) -> String { "sous-\(name)" }
    public func veth(_ i: Int) -> String { "sous-v\(i)" }
    public func address(_ i: Int) -> String { "10.213.0.\(10 + i)" }
    public func nodeDir(_ name: String) -> String { "\(dir)/nodes/\(name)" }
    public var clientKey: String { "\(dir)/id_ed25519" }
    public var hub: String { "\(dir)/hub" }
    /// The nodes' own key (the login user's ~/.ssh/id_ed25519; the simulated nodes share /home), for node-to-node SSH.
    public static let nodeKey = "/home/sous/.ssh/id_ed25519"
    public func authorized(_ name: String) -> String { "\(nodeDir(name))/authorized/\(SimLayout.user)" }
    public var knownHosts: String { "\(dir)/known_hosts" }
    public var stateFile: String { "\(dir)/state.json" }
    /// Which engine the images of this simulation run.
    public var engineFile: String { "\(dir)/engine" }
    public var engine: SimRegistry.Engine {
        (try? String(contentsOfFile: engineFile, encoding: .utf8)).flatMap { SimRegistry.Engine(rawValue: $0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? .modelled
    }
    public static let interface = "enp1s0f1np1"
    public static let hfCache = "/home/sous/.cache/huggingface"
}

/// The simulation's lifecycle: nodes up (namespaces, mounts, sshd, the hub), faults, and down.
public enum SimCluster {
    /// Starts `nodes` simulated nodes and writes an inventory for them; returns the lines to print.
    public static func up(_ l: SimLayout, nodes: Int, inventory inventoryPath: String, loadSeconds: Double, shardBytes: Int, downloadRate: Int,
                          engine: SimRegistry.Engine = .modelled, router: Bool = false) throws -> [String] {
        guard (1...8).contains(nodes) else { throw UsageError("--nodes must be 1…8") }
        if router {
            guard nodes >= 2 else { throw UsageError("--router needs at least two groups of nodes (--nodes 4 for two pairs)") }
            guard SimRegistry.routerInstalled else { throw UsageError("--router: vllm-router \(SimRegistry.routerVersion) is not installed under \(SimRegistry.routerEntry)", hint: "bash scripts/router-env") }
        }
        let engines = SimRegistry.installedEngines()
        let hasTinyAgent = FileManager.default.fileExists(atPath: SimHub.tinyAgentDir + "/.sous-ok")
        if engine == .vllm {
            guard !engines.isEmpty else {
                throw UsageError("--engine vllm: no real vLLM is installed under \(SimRegistry.engineRoot)", hint: "bash scripts/engine-env (a few minutes, ~3.5 GB per release)")
            }
            guard hasTinyAgent else {
                throw UsageError("--engine vllm: the tiny agent model is not made (\(SimHub.tinyAgentDir))", hint: "bash scripts/make-tiny-agent")
            }
        }
        for tool in ["/usr/sbin/sshd", "/usr/bin/sudo", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/ssh-keygen", "/usr/sbin/dockerd", "/usr/bin/docker",
                     "/usr/bin/docker-registry", "/bin/busybox"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw UsageError("\(tool) is missing", hint: "bash scripts/install-deps")
        }
        _ = teardown(l)
        let clock = ContinuousClock(), start = clock.now
        let fm = FileManager.default
        try fm.createDirectory(atPath: l.dir + "/nodes", withIntermediateDirectories: true)
        try Local.sh("ip route replace unreachable \(SimLayout.range)")
        try Local.sh("ip link add \(SimLayout.bridge) type bridge && ip link set \(SimLayout.bridge) mtu 9000 && ip addr add 10.213.0.1/24 dev \(SimLayout.bridge) && ip link set \(SimLayout.bridge) up")
        try Local.sh("id -u \(SimLayout.user) >/dev/null 2>&1 || { useradd -m -s /bin/bash \(SimLayout.user) && usermod -p '*' \(SimLayout.user); }")
        // As on a DGX Spark, the login user runs docker without sudo: it is in the docker group (Debian's docker.io
        // makes the group; dockerd gives its socket to it).
        try Local.sh("getent group docker >/dev/null || groupadd -r docker; usermod -aG docker \(SimLayout.user)")
        try "\(SimLayout.user) ALL=(ALL) NOPASSWD:ALL\n".write(toFile: "/etc/sudoers.d/sous-sim", atomically: true, encoding: .utf8)
        try Local.sh("chmod 0440 /etc/sudoers.d/sous-sim && mkdir -p /run/sshd && chmod 0755 /run/sshd && mkdir -p \(SimLayout.hfCache) && chown -R \(SimLayout.user): /home/\(SimLayout.user)/.cache")
        if !fm.fileExists(atPath: l.clientKey) { try Local.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "sous-sim", "-f", l.clientKey]) }
        if !fm.fileExists(atPath: SimLayout.nodeKey) {
            try Local.sh("install -d -m 0700 -o \(SimLayout.user) -g \(SimLayout.user) /home/\(SimLayout.user)/.ssh")
            try Local.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "sous-sim-node", "-f", SimLayout.nodeKey])
            try Local.sh("chown \(SimLayout.user): \(SimLayout.nodeKey) \(SimLayout.nodeKey).pub")
        }
        try Local.sh("chmod 0755 '\(l.dir)'")
        // The registry and the images it offers (built once, kept under /var/cache/sous between simulations).
        try "\(engine.rawValue)\n".write(toFile: l.engineFile, atomically: true, encoding: .utf8)
        _ = try SimRegistry.start(l, engine: engine)
        let tags = SimRegistry.tags(engine)
        let built = try SimRegistry.ensureImages(l, tags: tags, engine: engine)
        if router { try SimRegistry.ensureRouterImage(l) }
        // The stand-in hub, and the one token that opens its gated repositories.
        // Written every time (the same bytes, the same revision), so a hub from an older sous is never stale.
        for repo in SimHub.repos { try SimHub.write(repo, to: l.hub, shardBytes: shardBytes) }
        if hasTinyAgent { try SimHub.publish(directory: SimHub.tinyAgentDir, as: SimHub.tinyAgent, to: l.hub) }
        if !fm.fileExists(atPath: l.hub + "/.tokens") { try "hf_sim_\(sha256Hex(UUID().uuidString).prefix(24))\n".write(toFile: l.hub + "/.tokens", atomically: true, encoding: .utf8) }
        try Local.sh("chmod -R a+rX '\(l.hub)'")
        // The hub's HTTP server on the bridge address, for the real `hf` on the nodes (SimHubServer).
        let hubLine = try SimHubServer.startDetached(hub: l.hub, rate: downloadRate)

        var known = "", state: [[String: Any]] = []
        var nodeLines: [String] = []
        for i in 1...nodes {
            let name = l.nodeName(i), ns = l.namespace(name), nd = l.nodeDir(name), addr = l.address(i)
            // A fresh node every time: no images, containers, env files or faults from an earlier run.
            for old in ["var-lib", "etc-systemd-system", "etc-default", "etc-docker", "usr-local-bin", "hf-cache"] { _ = try? Local.run("/bin/rm", ["-rf", "\(nd)/\(old)"]) }
            for sub in ["etc-systemd-system", "etc-default", "etc-docker", "dev", "var-lib/sous-sim/faults",
                        "usr-local-bin", "hf-cache", "var-lib-dpkg", "var-lib-apt", "authorized"] {
                try fm.createDirectory(atPath: "\(nd)/\(sub)", withIntermediateDirectories: true)
            }
            // The modelled tools: links to a copy of this binary, told apart by their name.
            let tools = "\(nd)/usr-local-bin/sous-sim-tools"
            try? fm.removeItem(atPath: tools)
            try fm.copyItem(atPath: Local.selfExecutable, toPath: tools)
            for t in ["nvidia-smi", "systemctl", "ibdev2netdev", "sous-sim-runc", "nvidia-container-runtime-hook"] {
                try? fm.removeItem(atPath: "\(nd)/usr-local-bin/\(t)")
                try fm.createSymbolicLink(atPath: "\(nd)/usr-local-bin/\(t)", withDestinationPath: "/usr/local/bin/sous-sim-tools")
            }
            try SimHubServer.installCLI(in: "\(nd)/usr-local-bin")
            try SimRuntime.writeEngineDir(nd, tools: tools, rank: i - 1)
            try SimNode.daemonJSON(node: name, registry: SimRegistry.address).write(to: URL(fileURLWithPath: "\(nd)/etc-docker/daemon.json"))
            let config = ["load_seconds": loadSeconds, "node": name, "sshd_pid_file": "\(nd)/sshd.pid",
                          "hub": l.hub, "download_bytes_per_second": downloadRate] as [String: Any]
            // sshd reads authorized keys as the login user: the directory must be traversable by it.
            try writeAuthorized(l, name, nodeSSH: true)
            try Local.sh("chmod 0755 '\(nd)' '\(nd)/authorized'")
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: "\(nd)/var-lib/sous-sim/config.json"))
            try Local.sh("chown -R \(SimLayout.user): \(nd)/var-lib/sous-sim \(nd)/hf-cache")
            let peers = (1...nodes).map { "\(l.address($0)) \(l.nodeName($0))" }.joined(separator: "\n")
            try "127.0.0.1 localhost\n\(peers)\n".write(toFile: "\(nd)/hosts", atomically: true, encoding: .utf8)
            // A GB10's 128 GB of unified memory, as the node's own /proc/meminfo.
            try "MemTotal:       131072000 kB\nMemFree:        126500000 kB\nMemAvailable:   127000000 kB\nBuffers:          100000 kB\nCached:          2000000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n"
                .write(toFile: "\(nd)/meminfo", atomically: true, encoding: .utf8)
            let hostKey = "\(nd)/ssh_host_ed25519_key"
            if !fm.fileExists(atPath: hostKey) { try Local.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey]) }
            try SSHDConfig.render(listen: addr, hostKey: hostKey, pidFile: "\(nd)/sshd.pid", authorizedKeysDir: "\(nd)/authorized")
                .write(toFile: "\(nd)/sshd_config", atomically: true, encoding: .utf8)

            try Local.sh("ip netns add \(ns) && ip link add \(l.veth(i)) type veth peer name \(SimLayout.interface) netns \(ns)"
                + " && ip link set \(l.veth(i)) master \(SimLayout.bridge) up && ip -n \(ns) addr add \(addr)/24 dev \(SimLayout.interface)"
                + " && ip link set \(l.veth(i)) mtu 9000 && ip -n \(ns) link set \(SimLayout.interface) mtu 9000"
                + " && ip -n \(ns) link set \(SimLayout.interface) up && ip -n \(ns) link set lo up")
            let pid = try SimNode.boot(l, name: name)
            state.append(["name": name, "namespace": ns, "veth": l.veth(i), "address": addr, "pid": Int(pid)])
            let keyLine = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            known += "\(addr) \(keyLine)\n"
            nodeLines.append("""
              - name: \(name)
                host: \(addr)
                user: \(SimLayout.user)
                identity_file: \(l.clientKey)
                interconnect_ip: \(addr)
                role: \(i == 1 ? "head" : "worker")
            """)
        }
        try known.write(toFile: l.knownHosts, atomically: true, encoding: .utf8)
        try JSONSerialization.data(withJSONObject: ["nodes": state], options: .prettyPrinted).write(to: URL(fileURLWithPath: l.stateFile))
        for i in 1...nodes { try waitForSSH(l.address(i), log: "\(l.nodeDir(l.nodeName(i)))/node.log") }

        try fm.createDirectory(atPath: (inventoryPath as NSString).deletingLastPathComponent.ifEmpty("."), withIntermediateDirectories: true)
        try """
        # Written by `sous sim up`: \(nodes) simulated DGX Spark node\(nodes == 1 ? "" : "s") on this machine. `sous sim down` removes them.
        cluster: sim
        image: vllm/vllm-openai:v\(engine == .vllm ? engines[0] : VLLMVersion(0, 24, 0))
        port: 8000
        api_key_env: VLLM_API_KEY
        launcher: mp
        hardware: dgx_spark_gb10
        interconnect:
          interface: \(SimLayout.interface)
          master_port: 29501
        known_hosts: \(l.knownHosts)
        nodes:
        \(nodeLines.joined(separator: "\n"))
        \(router ? "router:                     # vLLM's router (vllm-router \(SimRegistry.routerVersion) from PyPI) in front of the groups\n  node: \(l.nodeName(1))\n  port: 8080\n  image: \(SimRegistry.routerImage)\n  policy: round_robin\n" : "")

        """.write(toFile: inventoryPath, atomically: true, encoding: .utf8)
        let elapsed = clock.now - start
        return ["registry: \(SimRegistry.address), \(tags.count) images of the \(engine.rawValue) engine (\(built == 0 ? "all cached" : "\(built) built"))",
                "sim: \(nodes) node\(nodes == 1 ? "" : "s") up in \(String(format: "%.1f", elapsed.seconds)) s: " + (1...nodes).map { "\(l.nodeName($0)) \(l.address($0))" }.joined(separator: ", "),
                hubLine, "inventory: \(inventoryPath)"]
    }

    static func waitForSSH(_ address: String, log: String) throws {
        for _ in 0..<300 {
            if (try? Local.run("/bin/bash", ["-c", "exec 3<>/dev/tcp/\(address)/22"])) != nil { return }
            usleep(20_000)
        }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw UsageError("the simulated node at \(address) did not start sshd: \(text)", hint: "sous sim down, then sous sim up again")
    }

    /// Works from what exists, not only from the state file, so it also cleans up after a crash.
    /// Returns what it removed, for the user.
    @discardableResult
    public static func teardown(_ l: SimLayout) -> String {
        let namespaces = ((try? Local.sh("ip netns list", check: false).output) ?? "").split(separator: "\n")
            .compactMap { $0.split(separator: " ").first.map(String.init) }.filter { $0.hasPrefix("sous-spark-") }
        var killed = 0
        // A power loss for every node (dockerd would wait out its containers' stop timeouts; a simulation need not).
        for ns in namespaces {
            for _ in 0..<20 {
                let pids = SimNode.processes(namespace: ns)
                if pids.isEmpty { break }
                for pid in pids { kill(pid, SIGKILL) }
                for pid in pids { Local.stop(pid, grace: 0) }
                killed += pids.count
            }
        }
        // The registry and an image builder left by a crash, found by their configuration files.
        for pid in Local.processes(withArgument: "\(l.dir)/registry.yml") + Local.processes(withArgument: "\(l.dir)/builder/daemon.json") {
            kill(pid, SIGKILL); Local.stop(pid, grace: 0); killed += 1
        }
        _ = try? Local.run("/bin/rm", ["-rf", "\(l.dir)/builder"])
        // Docker's cgroups (the nodes' cgroup parents), deepest first, once their processes are gone.
        let cgroups = ((try? Local.sh("find /sys/fs/cgroup -depth -mindepth 2 -maxdepth 4 -type d -path '*/sous-sim-*' 2>/dev/null", check: false).output) ?? "")
            .split(separator: "\n").map(String.init)
        for dir in cgroups { rmdir(dir) }
        let links = ((try? Local.sh("ip -o link show", check: false).output) ?? "").split(separator: "\n")
            .compactMap { $0.split(separator: ":").dropFirst().first?.trimmingCharacters(in: .whitespaces).split(separator: "@").first.map(String.init) }
            .filter { $0.hasPrefix("sous-v") }
        for link in links { _ = try? Local.sh("ip link del \(link)", check: false) }
        for ns in namespaces { _ = try? Local.sh("ip netns del \(ns)", check: false) }
        _ = try? Local.sh("ip link del \(SimLayout.bridge) 2>/dev/null; ip route del unreachable \(SimLayout.range) 2>/dev/null", check: false)
        SimHubServer.stopDetached(hub: l.hub)
        try? FileManager.default.removeItem(atPath: l.stateFile)
        return "sim: down (\(namespaces.count) node\(namespaces.count == 1 ? "" : "s"), \(killed) process\(killed == 1 ? "" : "es") stopped)"
    }

    /// Switches `kind` on (or off) on `node`; returns the line to print.
    public static func fault(_ l: SimLayout, node: String, kind: String, off: Bool) throws -> String {
        guard let fault = SimFault(rawValue: kind) else {
            throw UsageError("unknown fault `\(kind)`", hint: didYouMean(kind, in: SimFault.allCases.map(\.rawValue)).map { "did you mean `\($0)`?" }
                             ?? "kinds: \(SimFault.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let nd = l.nodeDir(node)
        guard FileManager.default.fileExists(atPath: nd) else { throw UsageError("no simulated node `\(node)` in \(l.dir)", hint: "sous sim up") }
        let flag = "\(nd)/var-lib/sous-sim/faults/\(fault.rawValue)"
        if off { try? FileManager.default.removeItem(atPath: flag) } else { _ = FileManager.default.createFile(atPath: flag, contents: nil) }
        switch fault {
        case .reboot:
            try? FileManager.default.removeItem(atPath: flag)
            let clock = ContinuousClock(), start = clock.now
            SimNode.powerOff(l, name: node)
            _ = try SimNode.boot(l, name: node)
            try waitForSSH(try nodeAddress(l, node), log: "\(nd)/node.log")
            return "\(node): power-cycled, up again in \(String(format: "%.1f", (clock.now - start).seconds)) s"
        case .dockerDown: try off ? SimNode.startDocker(l, name: node) : SimNode.stopDocker(l, name: node)
        case .diskFull:
            // A 64 KiB filesystem where the daemon downloads layers: the pull fails with Docker's own ENOSPC.
            try SimNode.enter(l, name: node, off ? ["/bin/umount", "/var/lib/docker/tmp"] : ["/bin/mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", "/var/lib/docker/tmp"])
        case .noRDMA:
            try SimNode.enter(l, name: node, ["/bin/sh", "-c", off
                ? SimNode.rdmaDevices.map { "mknod -m 0666 /dev/infiniband/\($0.0) c \($0.1) \($0.2)" }.joined(separator: " && ")
                : "rm -f /dev/infiniband/*"])
        case .registryDown:
            if off { if SimRegistry.pid(l) == nil { _ = try SimRegistry.start(l, engine: l.engine) } } else if let pid = SimRegistry.pid(l) { kill(pid, SIGKILL); Local.stop(pid, grace: 0) }
        case .registryStall:
            guard let pid = SimRegistry.pid(l) else { throw UsageError("the simulation's registry is not running", hint: "sous sim fault \(node) registry-down --off") }
            kill(pid, off ? SIGCONT : SIGSTOP)
        default: break
        }
        if fault == .sshdDown {
            if off { throw UsageError("sshd cannot be restarted in place", hint: "sous sim up (restarts every node)") }
            // The listener and every session it forked, as when the OOM killer or a crash takes sshd down.
            let pids = SimNode.processes(l, name: node)
                .filter { ((try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("sshd") }
            for pid in pids { kill(pid, SIGKILL) }
        }
        if fault == .noNodeSSH { try writeAuthorized(l, node, nodeSSH: off) }
        if fault == .noHostHF {
            for t in ["hf", "huggingface-cli"] { try? FileManager.default.removeItem(atPath: "\(nd)/usr-local-bin/\(t)") }
            if off { try SimHubServer.installCLI(in: "\(nd)/usr-local-bin") }
        }
        if fault == .mtu1500 {
            try Local.sh("ip -n \(l.namespace(node)) link set \(SimLayout.interface) mtu \(off ? 9000 : 1500)")
        }
        return "\(node): \(fault.rawValue) \(off ? "off" : "on")"
    }

    static func nodeAddress(_ l: SimLayout, _ node: String) throws -> String {
        guard let i = Int(node.dropFirst("spark-".count)), node.hasPrefix("spark-") else { throw UsageError("no simulated node `\(node)`") }
        return l.address(i)
    }

    /// The node's authorized keys: the client's key, and (unless refused) the nodes' own key.
    public static func writeAuthorized(_ l: SimLayout, _ node: String, nodeSSH: Bool) throws {
        var text = try String(contentsOfFile: l.clientKey + ".pub", encoding: .utf8)
        if nodeSSH { text += try String(contentsOfFile: SimLayout.nodeKey + ".pub", encoding: .utf8) }
        try text.write(toFile: l.authorized(node), atomically: true, encoding: .utf8)
        try Local.sh("chmod 0644 '\(l.authorized(node))'")
    }
}

extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}

