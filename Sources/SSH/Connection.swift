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
    /// Trust on first use: write an unknown host's key to known_hosts (never for a host it records any key for).
    public var acceptNew: Bool
    public var connectTimeout: Duration
    /// The ssh-agent socket tried first (default: $SSH_AUTH_SOCK); nil skips the agent.
    public var agentSocket: String?
    /// The password sudo asks for (`--ask-sudo-password`): sent only on a sudo command's stdin, never stored.
    public var sudoPassword: Secret?

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
    /// The session's socket I/O (see shim.h); lives as long as the connection, so longer than any session.
    private let io = UnsafeMutablePointer<sous_io>.allocate(capacity: 1)
    var sessionHandle: OpaquePointer? { session }
    /// The host key this connection verified, as `TYPE BASE64` (a known_hosts line without the host).
    private(set) var verifiedHostKey: String?
    private let keepaliveInterval: Int32 = 15

    init(target: SSHTarget) {
        self.target = target
        io.initialize(to: sous_io(ssh_fd: -1, agent_deadline_ms: 0, agent_timed_out: 0))
    }

    deinit {
        shutdown()
        io.deallocate()
    }

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
        let known: KnownHosts
        do { known = try KnownHosts(path: expandTilde(target.knownHosts)) } catch {
            throw fail(.hostKeyUnknown, "cannot read known_hosts \(expandTilde(target.knownHosts)): \(error.localizedDescription)")
        }
        fd = try connectSocket(deadline: deadline)
        io.pointee.ssh_fd = fd
        guard let s = sous_session_init(io) else { throw fail(.sessionLost, "libssh2 could not create a session") }
        session = s
        libssh2_session_set_blocking(s, 0)
        try preferHostKeyTypes(known.entries(for: target.knownHostsName).filter { $0.marker == nil }.map(\.keyType))
        do {
            try wait(deadline, what: "the SSH handshake") { libssh2_session_handshake(s, libssh2_socket_t(fd)) }
            try verifyHostKey(known)
            try authenticate(deadline: deadline)
        } catch let e as SSHError where e.kind == .commandTimeout {
            // The node took the TCP connection but did not get through SSH in time: as unreachable as no answer.
            throw fail(.connectTimeout, "\(target.host):\(target.port) took the connection, but \(e.detail) (connect timeout \(target.connectTimeout))",
                       hint: "is sshd on the node overloaded or hung, or is another service on that port? try `ssh -v -p \(target.port) \(target.user)@\(target.host)`")
        }
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
    func waitSocket(_ deadline: ContinuousClock.Instant?, what: String, atMost: Int? = nil) throws {
        guard let session else { return }
        let dirs = libssh2_session_block_directions(session)
        var events: Int16 = 0
        if dirs & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
        if dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        var timeout = min(Int(keepaliveInterval) * 1000, atMost ?? .max)
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

    /// Asks for the host key types known_hosts records for this host first, so that a node with several host
    /// keys shows the one already trusted (as OpenSSH does): libssh2 would otherwise prefer ECDSA, and a node
    /// recorded by its ed25519 key would look changed. Certificate types are left out: sous checks plain keys.
    private func preferHostKeyTypes(_ recorded: [String]) throws {
        guard let session else { return }
        var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        let count = libssh2_session_supported_algs(session, LIBSSH2_METHOD_HOSTKEY, &algs)
        guard count > 0, let algs else { throw fail(.sessionLost, "libssh2 lists no host key types: \(lastError)") }
        defer { libssh2_free(session, algs) }
        let supported = (0..<Int(count)).compactMap { algs[$0].map { String(cString: $0) } }.filter { !$0.contains("-cert-") }
        // An RSA key signs as rsa-sha2-512 or rsa-sha2-256 in libssh2 versions that know them.
        let wanted = Set(recorded.flatMap { $0 == "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [$0] })
        let order = supported.filter { wanted.contains($0) } + supported.filter { !wanted.contains($0) }
        guard libssh2_session_method_pref(session, LIBSSH2_METHOD_HOSTKEY, order.joined(separator: ",")) == 0 else {
            throw fail(.sessionLost, "libssh2 refused the host key types \(order.joined(separator: ",")): \(lastError)")
        }
    }

    /// Checks the node's key against every line of known_hosts, as OpenSSH does: a key that any line marks
    /// @revoked is refused; a marker sous does not support (@cert-authority) for this host is refused rather
    /// than ignored; a key recorded for the host, of any type, must be the one presented, or the key changed.
    /// Only a host with no recorded key is unknown, and only then may --accept-new add it.
    private func verifyHostKey(_ known: KnownHosts) throws {
        guard let session else { return }
        var len = 0
        var type: Int32 = 0
        guard let raw = libssh2_session_hostkey(session, &len, &type) else {
            throw fail(.sessionLost, "the server sent no host key")
        }
        let key = Data(bytes: raw, count: len)
        let typeName = String(cString: sous_hostkey_type_name(type))
        let presented = "\(typeName) \(hostKeyFingerprint())"
        let name = target.knownHostsName
        let file = known.path
        if let revoked = known.entries.first(where: { $0.marker == "@revoked" && $0.key == key }) {
            throw fail(.hostKeyRevoked, "the node presents \(presented), which \(file):\(revoked.line) marks @revoked: refusing to connect to \(name)",
                       hint: "a revoked key may be in other hands: on the node's console give it new host keys (`sudo rm /etc/ssh/ssh_host_*_key* && sudo ssh-keygen -A && sudo systemctl restart ssh`), then verify the new key and record it")
        }
        let forHost = known.entries(for: name)
        if let other = forHost.first(where: { $0.marker != nil && $0.marker != "@revoked" }) {
            throw fail(.hostKeyUnknown, "\(file):\(other.line) has a \(other.marker!) line for \(name); sous checks plain host keys only and will not ignore it (the node presents \(presented))",
                       hint: "take \(name) out of that line's host names and record the node's own verified key for it, or point sous at another known_hosts file")
        }
        let recorded = forHost.filter { $0.marker == nil }
        if !recorded.contains(where: { $0.key == key }) {
            if !recorded.isEmpty {
                let quote = { (s: String) in (try? ShellQuote.quote(s)) ?? s }
                throw fail(.hostKeyChanged,
                           "HOST KEY CHANGED for \(name): the node now presents \(presented), but known_hosts records \(recorded.map { "\($0.keyType) at \(file):\($0.line)" }.joined(separator: ", ")). Someone may be intercepting the connection, or the node was reinstalled.",
                           hint: "if the node was reinstalled, verify its new key on its console (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`), then `ssh-keygen -R \(quote(name)) -f \(quote(file))` and connect again with --accept-new")
            }
            guard target.acceptNew else {
                throw fail(.hostKeyUnknown, "unknown host key \(presented) for \(name) (not in \(file))",
                           hint: "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the node, then rerun with --accept-new to add it")
            }
            guard typeName != "unknown" else { throw fail(.hostKeyUnknown, "the node presents a host key of a type sous cannot record (\(presented))") }
            try appendKnownHost("\(name) \(typeName) \(key.base64EncodedString())", to: known)
        }
        verifiedHostKey = "\(typeName) \(key.base64EncodedString())"
    }

    /// `SHA256:<base64>` as `ssh-keygen -l` prints it.
    func hostKeyFingerprint() -> String {
        guard let session, let hash = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256) else { return "SHA256:?" }
        let bytes = Data(bytes: hash, count: 32)
        return "SHA256:" + bytes.base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    /// Appends one line, on a line of its own even when the file's last line has no newline.
    private func appendKnownHost(_ line: String, to known: KnownHosts) throws {
        let path = known.path
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
        guard fd >= 0 else { throw fail(.hostKeyUnknown, "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        let text = (known.endsWithNewline ? "" : "\n") + line + "\n"
        let written = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard written == text.utf8.count else { throw fail(.hostKeyUnknown, "cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    // MARK: authentication

    private func authenticate(deadline: ContinuousClock.Instant) throws {
        guard let session else { return }
        var tried: [String] = []
        let user = target.user
        if let sock = target.agentSocket {
            // The agent gets half of the time left, so that a stalled one leaves time for the key files.
            let budget = Self.milliseconds(until: deadline) / 2
            sous_io_set_agent_deadline(io, Int64(budget))
            if try agentAuth(session: session, socket: sock, deadline: deadline) { return }
            tried.append(io.pointee.agent_timed_out != 0 ? "ssh-agent (\(sock)) did not answer within \(budget) ms" : "ssh-agent (\(sock))")
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
                   hint: io.pointee.agent_timed_out != 0
                       ? "the ssh-agent did not answer: check it with `ssh-add -l`, or unset SSH_AUTH_SOCK and set identity_file in the inventory"
                       : "put your public key in ~\(user)/.ssh/authorized_keys on the node, or set identity_file in the inventory")
    }

    private func agentAuth(session: OpaquePointer, socket: String, deadline: ContinuousClock.Instant) throws -> Bool {
        guard let agent = libssh2_agent_init(session) else { return false }
        libssh2_agent_set_identity_path(agent, socket)
        defer { libssh2_agent_disconnect(agent); libssh2_agent_free(agent) }
        // libssh2 does agent I/O in blocking calls even in non-blocking mode; the session's I/O callbacks bound
        // each one by the agent deadline (shim.h).
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
