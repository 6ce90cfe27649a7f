import CLibSSH2
import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// Everything needed to reach one node, after ~/.ssh/config and defaults are applied.
public struct SSHTarget: Sendable {
    public var name: String
    public var host: String
    public var port: Int
    public var user: String
    /// Tried in order after the agent.
    public var identityFiles: [String]
    public var knownHosts: String
    /// Trust on first use: write an unknown host's key to known_hosts (never replaces a changed key).
    public var acceptNew: Bool
    public var connectTimeout: Duration
    /// The ssh-agent socket tried first (default: $SSH_AUTH_SOCK); nil skips the agent.
    public var agentSocket: String?

    public init(name: String, host: String, port: Int = 22, user: String, identityFiles: [String] = [],
                knownHosts: String, acceptNew: Bool = false, connectTimeout: Duration = .seconds(10),
                agentSocket: String? = ProcessInfo.processInfo.environment["SSH_AUTH_SOCK"]) {
        self.name = name
        self.host = host
        self.port = port
        self.user = user
        self.identityFiles = identityFiles
        self.knownHosts = knownHosts
        self.acceptNew = acceptNew
        self.connectTimeout = connectTimeout
        self.agentSocket = agentSocket.flatMap { $0.isEmpty ? nil : $0 }
    }

    var label: String { "\(name) (\(user)@\(host)\(port == 22 ? "" : ":\(port)"))" }
    /// The host name as known_hosts writes it.
    var knownHostsName: String { port == 22 ? host : "[\(host)]:\(port)" }
}

private let libssh2Ready: Bool = { libssh2_init(0) == 0 }()

/// One SSH connection: a socket and a libssh2 session in non-blocking mode, every wait done with poll(2)
/// against a deadline. Not thread-safe: `SSHTransport` confines each connection to its own serial queue,
/// whose thread may block in poll without holding up Swift's cooperative pool.
final class Connection: @unchecked Sendable {
    let target: SSHTarget
    private var fd: Int32 = -1
    private var session: OpaquePointer?
    var sessionHandle: OpaquePointer? { session }
    /// The host key this connection verified, as `TYPE BASE64` (a known_hosts line without the host).
    private(set) var verifiedHostKey: String?
    private let keepaliveInterval: Int32 = 15

    init(target: SSHTarget) { self.target = target }

    deinit { shutdown() }

    /// Says goodbye and frees the session. Called on the connection's own queue by `SSHSession.close()`, so it
    /// never runs on another thread while the process exits (OpenSSL's exit handlers free what it would use).
    func shutdown() {
        if let session {
            libssh2_session_set_blocking(session, 1)
            libssh2_session_set_timeout(session, 2000)
            libssh2_session_disconnect_ex(session, SSH_DISCONNECT_BY_APPLICATION, "bye", "")
            libssh2_session_free(session)
            self.session = nil
        }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    func fail(_ kind: SSHError.Kind, _ detail: String, hint: String? = nil) -> SSHError {
        SSHError(kind, node: target.label, detail, hint: hint)
    }

    var lastError: String {
        guard let session else { return "" }
        return String(cString: sous_session_last_error(session))
    }

    // MARK: connect

    func open() throws {
        _ = libssh2Ready
        let deadline = ContinuousClock.now + target.connectTimeout
        fd = try connectSocket(deadline: deadline)
        guard let s = sous_session_init() else { throw fail(.sessionLost, "libssh2 could not create a session") }
        session = s
        libssh2_session_set_blocking(s, 0)
        try wait(deadline, what: "SSH handshake") { libssh2_session_handshake(s, libssh2_socket_t(fd)) }
        try verifyHostKey()
        try authenticate(deadline: deadline)
        libssh2_keepalive_config(s, 1, UInt32(keepaliveInterval))
    }

    private func connectSocket(deadline: ContinuousClock.Instant) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(target.host, String(target.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw fail(.unreachable, "cannot resolve \(target.host): \(String(cString: gai_strerror(rc)))",
                       hint: "check `host:` in the inventory, or a HostName in ~/.ssh/config")
        }
        defer { freeaddrinfo(list) }
        var lastProblem = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let sock = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if sock < 0 { continue }
            _ = fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(sock, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if connect(sock, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return sock }
            if errno != EINPROGRESS { lastProblem = String(cString: strerror(errno)); Glibc.close(sock); continue }
            var pfd = pollfd(fd: sock, events: Int16(POLLOUT), revents: 0)
            let ms = Self.milliseconds(until: deadline)
            let ready = poll(&pfd, 1, Int32(ms))
            if ready == 0 {
                Glibc.close(sock)
                throw fail(.connectTimeout, "no answer from \(target.host):\(target.port) within \(target.connectTimeout)",
                           hint: "is the node up and sshd listening? try `ssh -p \(target.port) \(target.user)@\(target.host)`")
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len)
            if err == 0 { return sock }
            lastProblem = String(cString: strerror(err))
            Glibc.close(sock)
        }
        throw fail(.unreachable, "cannot connect to \(target.host):\(target.port): \(lastProblem)",
                   hint: "is sshd running on the node, and is the port right?")
    }

    static func milliseconds(until deadline: ContinuousClock.Instant) -> Int {
        let d = deadline - ContinuousClock.now
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return max(0, Int(ms))
    }

    /// Repeats a libssh2 call while it says EAGAIN, waiting on the socket in the direction libssh2 needs.
    @discardableResult
    func wait(_ deadline: ContinuousClock.Instant?, what: String, _ call: () -> Int32) throws -> Int32 {
        while true {
            let rc = call()
            if rc != LIBSSH2_ERROR_EAGAIN {
                if rc < 0 { throw fail(.sessionLost, "\(what) failed: \(lastError) (\(rc))") }
                return rc
            }
            try waitSocket(deadline, what: what)
        }
    }

    /// Same as `wait` for calls returning a pointer (nil with EAGAIN means try again).
    func waitPointer<T>(_ deadline: ContinuousClock.Instant?, what: String, _ call: () -> T?) throws -> T {
        while true {
            if let p = call() { return p }
            guard let session, sous_session_last_errno(session) == LIBSSH2_ERROR_EAGAIN else {
                throw fail(.sessionLost, "\(what) failed: \(lastError)")
            }
            try waitSocket(deadline, what: what)
        }
    }

    /// Polls the socket for what libssh2 is blocked on, up to the deadline; sends keepalives on long waits.
    func waitSocket(_ deadline: ContinuousClock.Instant?, what: String) throws {
        guard let session else { return }
        let dirs = libssh2_session_block_directions(session)
        var events: Int16 = 0
        if dirs & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
        if dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        var timeout = Int(keepaliveInterval) * 1000
        if let deadline {
            let left = Self.milliseconds(until: deadline)
            if left == 0 { throw fail(.commandTimeout, "\(what) did not finish in time") }
            timeout = min(timeout, left)
        }
        var pfd = pollfd(fd: fd, events: events, revents: 0)
        let rc = poll(&pfd, 1, Int32(timeout))
        if rc == 0 {
            var next: Int32 = 0
            _ = libssh2_keepalive_send(session, &next)
        }
    }

    // MARK: host key

    private func verifyHostKey() throws {
        guard let session else { return }
        var len = 0
        var type: Int32 = 0
        guard let key = libssh2_session_hostkey(session, &len, &type) else {
            throw fail(.sessionLost, "the server sent no host key")
        }
        let fingerprint = hostKeyFingerprint()
        let typeName = String(cString: sous_hostkey_type_name(type))
        guard let kh = libssh2_knownhost_init(session) else { throw fail(.sessionLost, "libssh2 knownhost_init failed") }
        defer { libssh2_knownhost_free(kh) }
        let path = expandTilde(target.knownHosts)
        if FileManager.default.fileExists(atPath: path), sous_knownhost_readfile(kh, path) < 0 {
            throw fail(.hostKeyUnknown, "cannot read known_hosts \(path): \(lastError)")
        }
        let mask = Int32(LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW) | sous_knownhost_keytype(type)
        let check = sous_knownhost_check(kh, target.host, Int32(target.port), key, len, mask)
        switch check {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH:
            break
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
            throw fail(.hostKeyChanged,
                       "HOST KEY CHANGED for \(target.knownHostsName): the node now presents \(typeName) \(fingerprint), which does not match \(path). Someone may be intercepting the connection, or the node was reinstalled.",
                       hint: "if the node was reinstalled, verify the new key on its console (`ssh-keygen -lf /etc/ssh/ssh_host_\(typeName.replacingOccurrences(of: "ssh-", with: ""))_key.pub`), then `ssh-keygen -R '\(target.knownHostsName)' -f \(path)` and connect again with --accept-new")
        default:
            guard target.acceptNew else {
                throw fail(.hostKeyUnknown, "unknown host key \(typeName) \(fingerprint) for \(target.knownHostsName) (not in \(path))",
                           hint: "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the node, then rerun with --accept-new to add it")
            }
            var buf = [CChar](repeating: 0, count: 8192)
            var outLen = 0
            let rc = sous_knownhost_line(kh, target.knownHostsName, key, len, sous_knownhost_keytype(type), &buf, buf.count, &outLen)
            guard rc == 0 else { throw fail(.hostKeyUnknown, "could not format the known_hosts line: \(lastError)") }
            let line = String(decoding: buf[0..<outLen].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            try appendKnownHost(line, path: path)
        }
        verifiedHostKey = "\(typeName) \(Data(bytes: key, count: len).base64EncodedString())"
    }

    /// `SHA256:<base64>` as `ssh-keygen -l` prints it.
    func hostKeyFingerprint() -> String {
        guard let session, let hash = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256) else { return "SHA256:?" }
        let bytes = Data(bytes: hash, count: 32)
        return "SHA256:" + bytes.base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    private func appendKnownHost(_ line: String, path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
        guard fd >= 0 else { throw fail(.hostKeyUnknown, "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        let text = line.hasSuffix("\n") ? line : line + "\n"
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
    }

    // MARK: authentication

    private func authenticate(deadline: ContinuousClock.Instant) throws {
        guard let session else { return }
        var tried: [String] = []
        let user = target.user
        if let sock = target.agentSocket {
            if try agentAuth(session: session, socket: sock, deadline: deadline) { return }
            tried.append("ssh-agent (\(sock))")
        }
        var encrypted: [String] = []
        for file in target.identityFiles {
            let path = expandTilde(file)
            guard FileManager.default.isReadableFile(atPath: path) else { continue }
            if Self.isEncrypted(path: path) { encrypted.append(path); continue }
            let rc = try wait(deadline, what: "public-key authentication") {
                let r = sous_userauth_publickey_fromfile(session, user, nil, path, nil)
                return r == LIBSSH2_ERROR_EAGAIN ? r : (r < 0 ? 1 : 0)
            }
            if rc == 0 { return }
            tried.append(path)
        }
        if !encrypted.isEmpty && tried.allSatisfy({ !$0.hasPrefix("ssh-agent") }) {
            throw fail(.encryptedKey, "the identity file \(encrypted.joined(separator: ", ")) is protected by a passphrase and no ssh-agent holds it",
                       hint: "start an agent and load the key: eval \"$(ssh-agent)\" && ssh-add \(encrypted[0])")
        }
        throw fail(.authentication, "\(user) was refused; tried " + (tried + encrypted.map { "\($0) (encrypted)" }).joined(separator: ", ").ifEmpty("no keys (none found)"),
                   hint: "put your public key in ~\(user)/.ssh/authorized_keys on the node, or set identity_file in the inventory")
    }

    private func agentAuth(session: OpaquePointer, socket: String, deadline: ContinuousClock.Instant) throws -> Bool {
        guard let agent = libssh2_agent_init(session) else { return false }
        libssh2_agent_set_identity_path(agent, socket)
        defer { libssh2_agent_disconnect(agent); libssh2_agent_free(agent) }
        // Agent I/O is a local Unix socket; libssh2 does it in blocking calls even in non-blocking mode.
        guard libssh2_agent_connect(agent) == 0, libssh2_agent_list_identities(agent) == 0 else { return false }
        var prev: UnsafeMutablePointer<libssh2_agent_publickey>?
        var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
        while libssh2_agent_get_identity(agent, &identity, prev) == 0 {
            let ok = try wait(deadline, what: "agent authentication") {
                let r = libssh2_agent_userauth(agent, target.user, identity)
                return r == LIBSSH2_ERROR_EAGAIN ? r : (r < 0 ? 1 : 0)
            }
            if ok == 0 { return true }
            prev = identity
        }
        return false
    }

    /// An OpenSSH-format key names its cipher ("none" when unencrypted); PEM keys say Proc-Type: 4,ENCRYPTED.
    static func isEncrypted(path: String) -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        if text.contains("ENCRYPTED") { return true }
        guard text.contains("BEGIN OPENSSH PRIVATE KEY") else { return false }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let data = Data(base64Encoded: body), data.count > 20 else { return false }
        // "openssh-key-v1\0" then a uint32 length and the cipher name.
        let magic = 15
        let len = data[magic..<magic + 4].reduce(0) { $0 << 8 | Int($1) }
        guard data.count >= magic + 4 + len else { return false }
        return String(decoding: data[(magic + 4)..<(magic + 4 + len)], as: UTF8.self) != "none"
    }
}

func expandTilde(_ path: String) -> String {
    path.hasPrefix("~/") ? NSHomeDirectory() + String(path.dropFirst(1)) : path
}

extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}
