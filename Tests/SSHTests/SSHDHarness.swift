import Foundation
import SousKit
@testable import SSH
import SousSim
import SousTestSupport

/// Real OpenSSH sshd "nodes" on loopback addresses (127.0.2.x:22), each with its own host key, an ordinary
/// login user, a client key and a known_hosts file. Needs root. Stops exactly the processes it started.
final class SSHDHarness: @unchecked Sendable {
    static let user = "soustest"
    /// A user with no sudo rights, to see sudo ask for a password.
    static let plainUser = "soustest2"
    private static let lock = NSLock()
    nonisolated(unsafe) private static var nextOctet = 10

    let dir: String
    let clientKey: String
    let knownHosts: String
    private(set) var addresses: [String] = []
    private(set) var pids: [Int32] = []
    private(set) var hostKeys: [String] = []

    init(nodes: Int) throws {
        guard getuid() == 0 else { throw HarnessError("the sshd harness needs root (it starts sshd and adds test users)") }
        dir = NSTemporaryDirectory() + "sous-sshd-\(UUID().uuidString.prefix(8))"
        clientKey = "\(dir)/client_ed25519"
        knownHosts = "\(dir)/known_hosts"
        try FileManager.default.createDirectory(atPath: "\(dir)/authorized", withIntermediateDirectories: true)
        try Self.ensureUsers()
        try sh("ssh-keygen -q -t ed25519 -N '' -C sous-test -f \(clientKey)")
        let pub = try String(contentsOfFile: clientKey + ".pub", encoding: .utf8)
        for u in [Self.user, Self.plainUser] { try pub.write(toFile: "\(dir)/authorized/\(u)", atomically: true, encoding: .utf8) }
        try sh("mkdir -p /run/sshd && chmod 0755 /run/sshd")
        var known = ""
        for i in 0..<nodes {
            let addr = Self.allocate()
            addresses.append(addr)
            let hostKey = "\(dir)/host\(i)_ed25519"
            try sh("ssh-keygen -q -t ed25519 -N '' -f \(hostKey) && chmod 600 \(hostKey)")
            hostKeys.append(hostKey)
            let keyLine = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            known += "\(addr) \(keyLine)\n"
            try startSSHD(index: i, address: addr, hostKey: hostKey)
        }
        try known.write(toFile: knownHosts, atomically: true, encoding: .utf8)
        for addr in addresses { try waitListening(addr) }
    }

    func config(index: Int, address: String, hostKey: String) -> String {
        SSHDConfig.render(listen: address, hostKey: hostKey, pidFile: "\(dir)/sshd\(index).pid", authorizedKeysDir: "\(dir)/authorized", logLevel: "ERROR")
    }

    private func startSSHD(index: Int, address: String, hostKey: String) throws {
        let cfg = "\(dir)/sshd\(index).conf"
        try config(index: index, address: address, hostKey: hostKey).write(toFile: cfg, atomically: true, encoding: .utf8)
        // posix_spawn, not Foundation's Process: Process's child monitor blocks in wait4 on a long-running
        // child and stalls every later Process.waitUntilExit.
        let pid = try Local.spawn("/usr/sbin/sshd", ["-f", cfg, "-D", "-E", "\(dir)/sshd\(index).log"])
        pids.append(pid)
    }

    /// Replaces node `index`'s host key and restarts its sshd (the "node was reinstalled" case).
    func rotateHostKey(index: Int) throws {
        stop(index: index)
        try sh("rm -f \(hostKeys[index]) \(hostKeys[index]).pub && ssh-keygen -q -t ed25519 -N '' -f \(hostKeys[index]) && chmod 600 \(hostKeys[index])")
        try startSSHD(index: index, address: addresses[index], hostKey: hostKeys[index])
        pids.swapAt(index, pids.count - 1)
        pids.removeLast()
        try waitListening(addresses[index])
    }

    func node(_ index: Int, user: String = SSHDHarness.user, name: String? = nil) -> NodeSpec {
        NodeSpec(name: name ?? "node\(index)", host: addresses[index], port: 22, user: user, identityFile: clientKey,
                 interconnectIP: addresses[index], role: index == 0 ? .head : .worker)
    }

    func transport(knownHosts: String? = nil, acceptNew: Bool = false, timeout: Duration = .seconds(5), agent: String? = nil) -> SSHTransport {
        SSHTransport(knownHosts: knownHosts ?? self.knownHosts, acceptNew: acceptNew, connectTimeout: timeout,
                     config: SSHConfig(text: "", file: "none"), agentSocket: agent)
    }

    private func stop(index: Int) {
        let pid = pids[index]
        kill(pid, SIGTERM)
        Self.waitGone(pid)
    }

    func shutdown() {
        for pid in pids { kill(pid, SIGTERM) }
        for pid in pids { Self.waitGone(pid) }
        pids = []
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { shutdown() }

    /// PID 1 here reaps late, so `kill -0` keeps succeeding for a while: wait for state Z or no process.
    static func waitGone(_ pid: Int32) {
        var status: Int32 = 0
        for _ in 0..<200 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            if isZombie(pid) { _ = waitpid(pid, &status, WNOHANG); return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
    }

    private func waitListening(_ address: String) throws {
        for _ in 0..<300 {
            if let pid = pids.last, kill(pid, 0) != 0 || Self.isZombie(pid) {
                throw HarnessError("sshd on \(address) exited: \((try? String(contentsOfFile: "\(dir)/sshd\(pids.count - 1).log", encoding: .utf8)) ?? "")")
            }
            if (try? sh("exec 3<>/dev/tcp/\(address)/22")) != nil { return }
            usleep(10_000)
        }
        throw HarnessError("sshd on \(address) did not start; see \(dir)/*.log")
    }

    /// The next 127.0.2.x on which nothing listens on port 22 (a leftover sshd from a killed run may hold one).
    static func allocate() -> String {
        lock.lock(); defer { lock.unlock() }
        while true {
            let address = "127.0.2.\(nextOctet)"
            nextOctet = nextOctet >= 250 ? 10 : nextOctet + 1
            if (try? sh("exec 3<>/dev/tcp/\(address)/22")) == nil { return address }
        }
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)] == "Z"
    }

    static func ensureUsers() throws {
        lock.lock(); defer { lock.unlock() }
        for u in [user, plainUser] where (try? sh("id -u \(u)")) == nil {
            try sh("useradd -m -s /bin/sh \(u) && usermod -p '*' \(u)")
        }
        try "\(user) ALL=(ALL) NOPASSWD:ALL\n".write(toFile: "/etc/sudoers.d/\(user)", atomically: true, encoding: .utf8)
        try sh("chmod 0440 /etc/sudoers.d/\(user)")
    }
}

