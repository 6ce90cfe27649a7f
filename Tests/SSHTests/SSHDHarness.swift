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
    /// A user whose sudo asks for this password (`--ask-sudo-password`).
    static let passwordUser = "soustest3"
    static let sudoPassword = "pw-\(UUID().uuidString.prefix(12))"
    private static let lock = NSLock()
    nonisolated(unsafe) private static var nextOctet = 10
    /// Addresses a live harness holds, even while one of its sshds is restarting (a free port 22 does not make an
    /// address free: another harness taking it then got this one's connections).
    nonisolated(unsafe) private static var inUse = Set<String>()

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
        for u in [Self.user, Self.plainUser, Self.passwordUser] { try pub.write(toFile: "\(dir)/authorized/\(u)", atomically: true, encoding: .utf8) }
        try sh("mkdir -p /run/sshd && chmod 0755 /run/sshd")
        var known = ""
        for i in 0..<nodes {
            let addr = Self.allocate()
            addresses.append(addr)
            let hostKey = "\(dir)/host\(i)_ed25519"
            try sh("ssh-keygen -q -t ed25519 -N '' -f \(hostKey) && chmod 600 \(hostKey)")
            hostKeys.append(hostKey)
            let keyLine = try publicKey(hostKey)
            known += "\(addr) \(keyLine)\n"
            try startSSHD(index: i, address: addr, hostKeys: [hostKey])
        }
        try known.write(toFile: knownHosts, atomically: true, encoding: .utf8)
        for addr in addresses { try waitListening(addr) }
    }

    /// One `HostKey` line for `hostKey` and one for each of `moreHostKeys`.
    func config(index: Int, address: String, hostKey: String, moreHostKeys: [String] = []) -> String {
        SSHDConfig.render(listen: address, hostKey: hostKey, pidFile: "\(dir)/sshd\(index).pid", authorizedKeysDir: "\(dir)/authorized", logLevel: "ERROR")
            + moreHostKeys.map { "HostKey \($0)\n" }.joined()
    }

    private func startSSHD(index: Int, address: String, hostKeys: [String]) throws {
        let cfg = "\(dir)/sshd\(index).conf"
        try config(index: index, address: address, hostKey: hostKeys[0], moreHostKeys: Array(hostKeys.dropFirst()))
            .write(toFile: cfg, atomically: true, encoding: .utf8)
        // posix_spawn, not Foundation's Process: Process's child monitor blocks in wait4 on a long-running
        // child and stalls every later Process.waitUntilExit.
        let pid = try Local.spawn("/usr/sbin/sshd", ["-f", cfg, "-D", "-E", "\(dir)/sshd\(index).log"])
        pids.append(pid)
    }

    /// Replaces node `index`'s host key and restarts its sshd (the "node was reinstalled" case).
    func rotateHostKey(index: Int) throws {
        stop(index: index)
        try sh("rm -f \(hostKeys[index]) \(hostKeys[index]).pub && ssh-keygen -q -t ed25519 -N '' -f \(hostKeys[index]) && chmod 600 \(hostKeys[index])")
        try startSSHD(index: index, address: addresses[index], hostKeys: [hostKeys[index]])
        pids.swapAt(index, pids.count - 1)
        pids.removeLast()
        try waitListening(addresses[index])
    }

    /// Starts one more node with host keys of these types (`ssh-keygen -t`), the first being `hostKeys[index]`;
    /// `\(dir)/host<index>_<type>` holds each. known_hosts is left as it is: the caller writes what it needs.
    @discardableResult
    func addNode(keyTypes: [String]) throws -> Int {
        let index = addresses.count
        let address = Self.allocate()
        let keys = keyTypes.map { "\(dir)/host\(index)_\($0)" }
        for (type, key) in zip(keyTypes, keys) { try sh("ssh-keygen -q -t \(type) -N '' -f \(key) && chmod 600 \(key)") }
        addresses.append(address)
        hostKeys.append(keys[0])
        try startSSHD(index: index, address: address, hostKeys: keys)
        try waitListening(address)
        return index
    }

    /// `TYPE BASE64` of a key's .pub, as a known_hosts line carries it after the host names.
    func publicKey(_ key: String) throws -> String {
        try String(contentsOfFile: key + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
    }

    /// `SHA256:...` as `ssh-keygen -l` prints it.
    func fingerprint(_ key: String) throws -> String {
        try sh("ssh-keygen -lf \(key).pub | awk '{print $2}'").trimmingCharacters(in: .whitespacesAndNewlines)
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
        Self.lock.lock()
        Self.inUse.subtract(addresses)
        Self.lock.unlock()
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
        try Self.waitListening(address, port: 22, pid: pids.last, log: "\(dir)/sshd\(pids.count - 1).log")
    }

    static func waitListening(_ address: String, port: Int, pid: Int32?, log: String) throws {
        for _ in 0..<300 {
            if let pid, kill(pid, 0) != 0 || Self.isZombie(pid) {
                throw HarnessError("sshd on \(address) exited: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            if (try? sh("exec 3<>/dev/tcp/\(address)/\(port)")) != nil { return }
            usleep(10_000)
        }
        throw HarnessError("sshd on \(address):\(port) did not start; see \(log)")
    }

    /// One more sshd outside the node list, listening on `host` (an IPv6 address without brackets) and `port`,
    /// with `hostKey`. The caller stops it (`stopExtra`).
    func startExtraSSHD(host: String, port: Int, hostKey: String) throws -> Int32 {
        let name = "\(dir)/sshd-extra-\(port)"
        let listen = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        try config(index: 1000 + port, address: listen, hostKey: hostKey).write(toFile: name + ".conf", atomically: true, encoding: .utf8)
        let pid = try Local.spawn("/usr/sbin/sshd", ["-f", name + ".conf", "-D", "-E", name + ".log"])
        do { try Self.waitListening(host, port: port, pid: pid, log: name + ".log") } catch { stopExtra(pid); throw error }
        return pid
    }

    func stopExtra(_ pid: Int32) {
        kill(pid, SIGTERM)
        Self.waitGone(pid)
    }

    /// The next 127.0.2.x on which nothing listens on port 22 (a leftover sshd from a killed run may hold one).
    static func allocate() -> String {
        lock.lock(); defer { lock.unlock() }
        while true {
            let address = "127.0.2.\(nextOctet)"
            nextOctet = nextOctet >= 250 ? 10 : nextOctet + 1
            if !inUse.contains(address), (try? sh("exec 3<>/dev/tcp/\(address)/22")) == nil {
                inUse.insert(address)
                return address
            }
        }
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)] == "Z"
    }

    static func ensureUsers() throws {
        lock.lock(); defer { lock.unlock() }
        for u in [user, plainUser, passwordUser] where (try? sh("id -u \(u)")) == nil {
            try sh("useradd -m -s /bin/sh \(u) && usermod -p '*' \(u)")
        }
        try "\(user) ALL=(ALL) NOPASSWD:ALL\n".write(toFile: "/etc/sudoers.d/\(user)", atomically: true, encoding: .utf8)
        try "\(passwordUser) ALL=(ALL) ALL\n".write(toFile: "/etc/sudoers.d/\(passwordUser)", atomically: true, encoding: .utf8)
        try sh("chmod 0440 /etc/sudoers.d/\(user) /etc/sudoers.d/\(passwordUser)")
        // The password on stdin (chpasswd), never on a command line; a new one for each test run.
        let set = Process()
        set.executableURL = URL(fileURLWithPath: "/usr/sbin/chpasswd")
        let pipe = Pipe()
        set.standardInput = pipe
        try set.run()
        pipe.fileHandleForWriting.write(Data("\(passwordUser):\(sudoPassword)\n".utf8))
        try pipe.fileHandleForWriting.close()
        set.waitUntilExit()
        guard set.terminationStatus == 0 else { throw HarnessError("chpasswd failed for \(passwordUser)") }
    }
}


/// A listener that accepts connections and never says a word: a stalled ssh-agent (a Unix socket) or a hung
/// sshd (TCP on loopback). Holds what it accepted until `close()`.
final class SilentListener: @unchecked Sendable {
    let fd: Int32
    /// The Unix socket's path, or nil for TCP.
    let path: String?
    /// The TCP port, or 0 for a Unix socket.
    private(set) var port = 0
    private let stopped = DispatchSemaphore(value: 0)
    private var closed = false

    /// A Unix socket at `path`.
    init(unixPath: String) throws {
        path = unixPath
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(unixPath.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try start(bound: rc)
    }

    /// TCP on 127.0.0.1, on a port the kernel picks.
    init() throws {
        path = nil
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 ? getsockname(fd, $0, &len) : -1 }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        try start(bound: rc)
    }

    private func start(bound rc: Int32) throws {
        guard fd >= 0, rc == 0, listen(fd, 16) == 0 else { throw HarnessError("cannot listen: \(String(cString: strerror(errno)))") }
        DispatchQueue.global().async { [fd, stopped] in
            var accepted: [Int32] = []
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { break }
                accepted.append(c)
            }
            for c in accepted { Glibc.close(c) }
            stopped.signal()
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        shutdown(fd, Int32(SHUT_RDWR))   // ends the accept loop, which then closes what it accepted
        stopped.wait()
        Glibc.close(fd)
        if let path { unlink(path) }
    }

    deinit { close() }
}

/// Runs `open()` on a thread of its own and waits for it at most `limit`, so a connect that hangs fails the
/// test (nil) instead of stalling the whole run.
func openWithin(_ limit: Duration, _ connection: Connection) -> Result<Void, any Error>? {
    final class Box: @unchecked Sendable { var result: Result<Void, any Error>? }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        box.result = Result { try connection.open() }
        done.signal()
    }
    guard done.wait(timeout: .now() + .milliseconds(Int(limit.components.seconds * 1000))) == .success else { return nil }
    return box.result
}
