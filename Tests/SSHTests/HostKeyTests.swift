import Foundation
import Testing
import SousKit
@testable import SSH
import SousTestSupport

/// known_hosts checked as OpenSSH checks it, against real sshd nodes whose host keys each test chooses.
@Suite(.serialized) struct HostKeyTests {
    let harness: SSHDHarness
    init() throws { harness = try SSHDHarness(nodes: 0) }

    /// Writes a known_hosts file of these lines and returns its path.
    func knownHosts(_ name: String, _ lines: [String]) throws -> String {
        let path = "\(harness.dir)/\(name)_known_hosts"
        try lines.map { $0 + "\n" }.joined().write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func connectError(_ node: NodeSpec, _ knownHosts: String, acceptNew: Bool = false) async -> SSHError? {
        do {
            let s = try await harness.transport(knownHosts: knownHosts, acceptNew: acceptNew).connect(node)
            await s.close()
            Issue.record("connected to \(node.host):\(node.port ?? 22) with \(knownHosts)")
            return nil
        } catch let e as SSHError { return e } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    /// An impostor that has only an ECDSA host key answers for a host known_hosts records by its ed25519 key
    /// (as OpenSSH records it). Before, the lookup was limited to the presented key's type: "unknown", and
    /// --accept-new added the impostor. Plain and hashed entries, `host` and `[host]:port` names.
    @Test func aKeyOfAnotherTypeIsAChangedKeyNotANewOne() async throws {
        let real = harness.dir + "/real_ed25519"
        try sh("ssh-keygen -q -t ed25519 -N '' -f \(real)")
        let recorded = try harness.publicKey(real)
        let i = try harness.addNode(keyTypes: ["ecdsa"])
        let impostor = try harness.fingerprint(harness.hostKeys[i])
        let port = Int.random(in: 20000...40000)
        let pid = try harness.startExtraSSHD(host: harness.addresses[i], port: port, hostKey: harness.hostKeys[i])
        defer { harness.stopExtra(pid) }
        var onPort = harness.node(i)
        onPort.port = port

        for (node, name) in [(harness.node(i), harness.addresses[i]), (onPort, "[\(harness.addresses[i])]:\(port)")] {
            let plain = try knownHosts("plain", ["# the real node, as ssh wrote it", "\(name) \(recorded)"])
            let hashed = try knownHosts("hashed", ["# the real node, as ssh wrote it", "\(name) \(recorded)"])
            try sh("ssh-keygen -q -H -f \(hashed) && rm -f \(hashed).old")
            let quoted = try ShellQuote.quote(name)
            let removeHint = "ssh-keygen -R \(quoted) -f "
            for file in [plain, hashed] {
                let before = try String(contentsOfFile: file, encoding: .utf8)
                for accept in [false, true] {
                    let e = await connectError(node, file, acceptNew: accept)
                    #expect(e?.kind == .hostKeyChanged, "\(name) \(file) accept-new=\(accept): \(e?.detail ?? "")")
                    #expect(e?.exitCode == .unreachable)
                    #expect(e?.detail.hasPrefix("HOST KEY CHANGED for \(name)") == true, "\(e?.detail ?? "")")
                    #expect(e?.detail.contains(impostor) == true, "names the presented fingerprint: \(e?.detail ?? "")")
                    #expect(e?.detail.contains("ssh-ed25519 at \(file):2") == true, "names the recorded line: \(e?.detail ?? "")")
                    #expect(e?.hint?.contains(removeHint + file) == true, "\(e?.hint ?? "")")
                    #expect(try String(contentsOfFile: file, encoding: .utf8) == before, "--accept-new must not add a key for a recorded host")
                }
            }
        }
    }

    /// A node with ed25519 and ECDSA host keys, recorded by its ed25519 key alone as OpenSSH records it. libssh2
    /// prefers ECDSA: unless it is asked for the recorded type first, the node looks changed (or unknown).
    @Test func theRecordedKeyTypeIsAskedForFirst() async throws {
        let i = try harness.addNode(keyTypes: ["ed25519", "ecdsa"])
        let address = harness.addresses[i]
        for (type, prefix) in [("ed25519", "ssh-ed25519 "), ("ecdsa", "ecdsa-sha2-nistp256 ")] {
            let key = try harness.publicKey("\(harness.dir)/host\(i)_\(type)")
            let file = try knownHosts(type, ["\(address) \(key)"])
            let s = try await harness.transport(knownHosts: file).connect(harness.node(i))
            #expect(s.hostKey == key, "\(type): verified \(s.hostKey ?? "nil")")
            #expect(s.hostKey?.hasPrefix(prefix) == true)
            #expect(try await s.run(RemoteCommand(["echo", "ok"], timeout: nil)).stdoutText == "ok\n")
            await s.close()
        }
    }

    /// `@revoked` wins over a line that trusts the same key; `--accept-new` does not add a revoked key either.
    @Test func aRevokedKeyIsRefusedEvenWhenAnotherLineTrustsIt() async throws {
        let i = try harness.addNode(keyTypes: ["ed25519"])
        let address = harness.addresses[i]
        let key = try harness.publicKey(harness.hostKeys[i])
        let fingerprint = try harness.fingerprint(harness.hostKeys[i])
        let trusted = try knownHosts("revoked", ["\(address) \(key)", "@revoked * \(key)"])
        let onlyRevoked = try knownHosts("only_revoked", ["@revoked \(address) \(key)"])
        for (file, line, accept) in [(trusted, 2, false), (onlyRevoked, 1, true)] {
            let before = try String(contentsOfFile: file, encoding: .utf8)
            let e = await connectError(harness.node(i), file, acceptNew: accept)
            #expect(e?.kind == .hostKeyRevoked, "\(e?.detail ?? "")")
            #expect(e?.exitCode == .unreachable)
            #expect(e?.detail.contains("\(file):\(line)") == true, "\(e?.detail ?? "")")
            #expect(e?.detail.contains("@revoked") == true)
            #expect(e?.detail.contains(fingerprint) == true)
            #expect(try String(contentsOfFile: file, encoding: .utf8) == before)
        }
    }

    /// sous does not check host certificates: a `@cert-authority` line for the host is refused, not ignored;
    /// one for other hosts is none of this host's business.
    @Test func aCertAuthorityLineForTheHostIsRefusedNotIgnored() async throws {
        let i = try harness.addNode(keyTypes: ["ed25519"])
        let address = harness.addresses[i]
        let key = try harness.publicKey(harness.hostKeys[i])
        let ca = harness.dir + "/ca_ed25519"
        try sh("ssh-keygen -q -t ed25519 -N '' -f \(ca)")
        let caKey = try harness.publicKey(ca)
        let forHost = try knownHosts("ca", ["\(address) \(key)", "@cert-authority other.example,\(address) \(caKey)"])
        let e = await connectError(harness.node(i), forHost)
        #expect(e?.kind == .hostKeyUnknown, "\(e?.detail ?? "")")
        #expect(e?.exitCode == .unreachable)
        #expect(e?.detail.contains("\(forHost):2") == true, "\(e?.detail ?? "")")
        #expect(e?.detail.contains("@cert-authority") == true)

        let elsewhere = try knownHosts("ca_elsewhere", ["@cert-authority *.example.com \(caKey)", "\(address) \(key)"])
        let s = try await harness.transport(knownHosts: elsewhere).connect(harness.node(i))
        await s.close()
    }

    /// --accept-new appends on a line of its own even when the file's last line has no newline.
    @Test func acceptNewStartsItsOwnLine() async throws {
        let i = try harness.addNode(keyTypes: ["ed25519"])
        let file = "\(harness.dir)/no_newline_known_hosts"
        try "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl".write(toFile: file, atomically: true, encoding: .utf8)
        let s = try await harness.transport(knownHosts: file, acceptNew: true).connect(harness.node(i))
        await s.close()
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.last.map(String.init) == "\(harness.addresses[i]) \(try harness.publicKey(harness.hostKeys[i]))")
    }
}

/// The known_hosts reader on its own: names, patterns, hashes and markers as sshd(8) describes them.
@Suite struct KnownHostsFileTests {
    @Test func sha1AndHMACMatchTheirTestVectors() {
        func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
        #expect(hex(SHA1.hash(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA1.hash(Array(String(repeating: "a", count: 1_000).utf8))) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
        // RFC 2202, test cases 1 and 2.
        #expect(hex(SHA1.hmac(key: [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8))) == "b617318655057264e28bc0b6fb378c8ef146be00")
        #expect(hex(SHA1.hmac(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8))) == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    }

    /// What `ssh-keygen -H` writes is found by the name it hashed, and by nothing else.
    @Test func hashedNamesMatchWhatSSHKeygenWrites() throws {
        let file = NSTemporaryDirectory() + "sous-hashed-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        try "node1.example \(key)\n[node1.example]:2222 \(key)\n".write(toFile: file, atomically: true, encoding: .utf8)
        try sh("ssh-keygen -q -H -f \(file) && rm -f \(file).old")
        let known = try KnownHosts(path: file)
        #expect(known.entries.allSatisfy { $0.hosts.hasPrefix("|1|") })
        #expect(known.entries(for: "node1.example").map(\.line) == [1])
        #expect(known.entries(for: "NODE1.example").map(\.line) == [1])
        #expect(known.entries(for: "[node1.example]:2222").map(\.line) == [2])
        #expect(known.entries(for: "node2.example").isEmpty)
    }

    /// A missing file and /dev/null (UserKnownHostsFile=/dev/null) record nothing; a directory is an error.
    @Test func missingFilesDevNullAndDirectories() throws {
        #expect(try KnownHosts(path: "/nonexistent/sous/known_hosts").entries.isEmpty)
        #expect(try KnownHosts(path: "/dev/null").entries.isEmpty)
        #expect(throws: (any Error).self) { try KnownHosts(path: NSTemporaryDirectory()) }
    }

    @Test func patternsMarkersAndLineNumbers() throws {
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        let text = """
        # a comment

        a.example,B.example ssh-ed25519 \(key) a comment
        *.wild.example,!bad.wild.example ecdsa-sha2-nistp256 \(key)
        [a.example]:2222\tssh-rsa \(key)
        @revoked * ssh-ed25519 \(key)
        @cert-authority ca?.example ssh-ed25519 \(key)
        a.example not-base64 !!!
        a.example
        """
        let known = KnownHosts(text: text, path: "kh")
        #expect(known.entries(for: "a.example").map(\.line) == [3, 6, 8])
        #expect(known.entries(for: "b.example").map(\.line) == [3, 6])
        #expect(known.entries(for: "x.wild.example").map(\.line) == [4, 6])
        #expect(known.entries(for: "bad.wild.example").map(\.line) == [6])
        #expect(known.entries(for: "[a.example]:2222").map(\.line) == [5, 6])
        #expect(known.entries(for: "ca1.example").map(\.line) == [6, 7])
        #expect(known.entries(for: "ca12.example").map(\.line) == [6])
        let lines = Dictionary(known.entries.map { ($0.line, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(lines[3]?.marker == nil && lines[3]?.keyType == "ssh-ed25519" && lines[3]?.key == Data(base64Encoded: key))
        #expect(lines[6]?.marker == "@revoked")
        #expect(lines[7]?.marker == "@cert-authority" && lines[7]?.hosts == "ca?.example")
        #expect(lines[8]?.key == nil, "a key that does not decode still records one for its hosts")
        #expect(lines[9] == nil, "a line without a key records nothing")
    }
}
