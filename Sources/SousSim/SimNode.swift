import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// One simulated node's boot: its own mount namespace (private /run, /dev, /etc/docker, /var/lib, …) inside its
/// network namespace, a real Docker daemon, then sshd in the foreground. A power cycle kills every process of the
/// node and boots it again on the same disk (its /var/lib, and so Docker's data root, survive).
public enum SimNode {
    /// Docker's configuration on every node. No iptables, bridge or NAT (sous's containers use --network host);
    /// the simulation's registry is the node's mirror for Docker Hub names. Flags given both here and on the
    /// command line make dockerd refuse to start (measured, MACHINE.md), so everything is here.
    static func daemonJSON(node: String, registry: String) throws -> Data {
        let config: [String: Any] = [
            "iptables": false, "ip6tables": false, "bridge": "none", "ip-forward": false, "ip-masq": false,
            "storage-driver": "overlay2", "cgroup-parent": "/sous-sim-\(node)", "exec-root": "/run/docker",
            "pidfile": "/run/docker.pid", "data-root": "/var/lib/docker",
            "registry-mirrors": ["http://\(registry)"], "insecure-registries": [registry],
            // The simulation's stand-in for the image's own userland (SimRuntime.runtime); GPUs still come only with --gpus.
            "runtimes": ["sous-sim": ["path": "/usr/local/bin/sous-sim-runc"]], "default-runtime": "sous-sim",
        ]
        return try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// The device nodes a ConnectX-7 node has under /dev/infiniband (major/minor as the kernel's rdma_cm and
    /// ib_uverbs assign them); the rendered `--device /dev/infiniband` needs real ones.
    static let rdmaDevices = [("uverbs0", 231, 192), ("rdma_cm", 10, 58)]

    /// What runs inside the node's fresh mount namespace, as root, every boot.
    static func bootScript(_ l: SimLayout, name: String, rdma: Bool) -> String {
        let nd = l.nodeDir(name)
        let devices = ["null", "zero", "full", "random", "urandom", "tty", "ptmx"]
        var lines = [
            "set -e",
            // /run: the node's own (docker.sock, containerd's shim sockets and sshd's privsep dir would collide).
            "mount -t tmpfs -o mode=0755 tmpfs /run", "mkdir -p /run/sshd /run/sous-sim/gpu", "chmod 0755 /run/sshd",
            // /dev: the host's character devices, plus this node's own RDMA device nodes.
            "mount -t tmpfs -o mode=0755,size=1m tmpfs \(nd)/dev",
        ]
        lines += devices.map { "touch \(nd)/dev/\($0) && mount --bind /dev/\($0) \(nd)/dev/\($0)" }
        lines += [
            "mkdir -p \(nd)/dev/pts \(nd)/dev/shm \(nd)/dev/mqueue && mount --rbind /dev/pts \(nd)/dev/pts && mount -t tmpfs -o mode=1777 tmpfs \(nd)/dev/shm",
            "ln -s /proc/self/fd \(nd)/dev/fd && ln -s /proc/self/fd/0 \(nd)/dev/stdin && ln -s /proc/self/fd/1 \(nd)/dev/stdout && ln -s /proc/self/fd/2 \(nd)/dev/stderr",
        ]
        if rdma {
            lines.append("mkdir -p \(nd)/dev/infiniband")
            lines += rdmaDevices.map { "mknod -m 0666 \(nd)/dev/infiniband/\($0.0) c \($0.1) \($0.2)" }
        }
        lines += [
            "mount --rbind \(nd)/dev /dev",
            // /sys of the node's network namespace (its /sys/class/net), with this machine's cgroup hierarchies
            // moved back under it for dockerd and runc.
            "mkdir -p \(nd)/cgroup && mount --rbind /sys/fs/cgroup \(nd)/cgroup && mount -t sysfs sysfs /sys && mount --move \(nd)/cgroup /sys/fs/cgroup",
            "mount --bind \(nd)/etc-systemd-system /etc/systemd/system",
            "mount --bind \(nd)/etc-default /etc/default",
            "mount --bind \(nd)/etc-docker /etc/docker",
            "mount --bind /var/lib/dpkg \(nd)/var-lib-dpkg", "mount --bind /var/lib/apt \(nd)/var-lib-apt",
            "mount --bind \(nd)/var-lib /var/lib",
            "mkdir -p /var/lib/dpkg /var/lib/apt", "mount --bind \(nd)/var-lib-dpkg /var/lib/dpkg", "mount --bind \(nd)/var-lib-apt /var/lib/apt",
            "mount --bind \(nd)/usr-local-bin /usr/local/bin",
            "mount --bind \(nd)/hf-cache \(SimLayout.hfCache)",
            "mount --bind \(nd)/hosts /etc/hosts",
            "mount --bind \(nd)/meminfo /proc/meminfo",
            "hostname \(name)",
            startDockerd(nd),
            "rm -f \(nd)/sshd.pid",
            "/usr/sbin/sshd -D -f \(nd)/sshd_config -E \(nd)/sshd.log & sshd=$!",
            "i=0; while [ ! -s \(nd)/sshd.pid ] && [ $i -lt 400 ]; do sleep 0.025; i=$((i+1)); done",
            // What systemd does at boot: the units as their drop-ins say (sshd's OOMScoreAdjust), the enabled ones
            // started (earlyoom), as the modelled systemctl keeps them (SimSystemctl).
            "/usr/local/bin/systemctl daemon-reload || true; /usr/local/bin/systemctl restart ssh || true",
            "if [ -f \(SimSystemctl.dir)/earlyoom.enabled ]; then /usr/local/bin/systemctl start earlyoom || true; fi",
            "wait $sshd",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// dockerd in the background (its PATH must hold the GPU hook when it starts), then wait for its API socket,
    /// so that a node whose sshd answers also has a working Docker.
    static func startDockerd(_ nd: String) -> String {
        """
        PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin nohup /usr/sbin/dockerd --config-file /etc/docker/daemon.json >>\(nd)/dockerd.log 2>&1 &
        i=0; while [ ! -S /run/docker.sock ] && [ $i -lt 400 ]; do sleep 0.025; i=$((i+1)); done
        """
    }

    /// Boots the node: its processes start in its network namespace and a new mount and UTS namespace.
    /// `nsenter --net`, not `ip netns exec`: the latter remounts /sys, which hides the cgroup v1 hierarchies
    /// dockerd and runc need (measured, MACHINE.md).
    static func boot(_ l: SimLayout, name: String) throws -> Int32 {
        let nd = l.nodeDir(name)
        let rdma = !FileManager.default.fileExists(atPath: "\(nd)/var-lib/sous-sim/faults/\(SimFault.noRDMA.rawValue)")
        try bootScript(l, name: name, rdma: rdma).write(toFile: "\(nd)/boot.sh", atomically: true, encoding: .utf8)
        return try Local.spawn("/usr/bin/nsenter", ["--net=/run/netns/\(l.namespace(name))", "/usr/bin/unshare", "--mount", "--uts", "--propagation", "private",
                                                     "/bin/sh", "\(nd)/boot.sh"], output: "\(nd)/node.log", append: true, detach: true)
    }

    /// Every process of the node: everything in its network namespace (sshd and its sessions, dockerd,
    /// containerd, the shims, and the containers, which all use the host network of the node).
    public static func processes(_ l: SimLayout, name: String) -> [Int32] { processes(namespace: l.namespace(name)) }

    static func processes(namespace: String) -> [Int32] {
        ((try? Local.run("/usr/sbin/ip", ["netns", "pids", namespace], check: false).output) ?? "")
            .split(separator: "\n").compactMap { Int32($0) }.filter(Local.alive)
    }

    /// A power loss: every process of the node SIGKILLed at once, waited for.
    static func powerOff(_ l: SimLayout, name: String) {
        let pids = processes(l, name: name)
        for pid in pids { kill(pid, SIGKILL) }
        for pid in pids { Local.stop(pid, grace: 0) }
    }

    /// The node's sshd (the boot script's own process once it has exec'd), to enter its namespaces.
    static func initPID(_ l: SimLayout, name: String) throws -> Int32 {
        guard let text = try? String(contentsOfFile: "\(l.nodeDir(name))/sshd.pid", encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), Local.alive(pid) else {
            throw UsageError("simulated node \(name) is not running", hint: "sous sim up")
        }
        return pid
    }

    /// Runs a command inside the node's namespaces (as its own root would).
    @discardableResult
    static func enter(_ l: SimLayout, name: String, _ argv: [String], check: Bool = true) throws -> (status: Int32, output: String) {
        let pid = try initPID(l, name: name)
        return try Local.run("/usr/bin/nsenter", ["-t", String(pid), "-m", "-n", "-u", "--"] + argv, check: check)
    }

    /// Stops the node's Docker daemon as a crash would (containers keep running under their shims).
    static func stopDocker(_ l: SimLayout, name: String) throws {
        let pids = processes(l, name: name).filter { ((try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("dockerd") }
        for pid in pids { kill(pid, SIGKILL) }
        for pid in pids { Local.stop(pid, grace: 0) }
    }

    static func startDocker(_ l: SimLayout, name: String) throws {
        try enter(l, name: name, ["/bin/sh", "-c", "rm -f /run/docker.sock /run/docker.pid; " + startDockerd(l.nodeDir(name))])
    }
}
