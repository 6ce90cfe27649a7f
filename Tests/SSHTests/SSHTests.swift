import Foundation
import Testing
import SousKit
@testable import SSH
import SousTestSupport
import SousSim

/// Every test here talks to real OpenSSH sshd processes that the harness starts on 127.0.2.x and stops.
@Suite(.serialized) struct SSHTests {
    let harness: SSHDHarness
    init() throws { harness = try SSHDHarness(nodes: 2) }

    func session(_ i: Int = 0, user: String = SSHDHarness.user) async throws -> NodeSession {
        try await harness.transport().connect(harness.node(i, user: user))
    }

    func sshError(_ body: () async throws -> Void) async -> SSHError? {
        do { try await body(); return nil } catch let e as SSHError { return e } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func exitStatusesAndSignals() async throws {
        let s = try await session()
        #expect(try await s.run(RemoteCommand(["true"], timeout: nil)).exitStatus == 0)
        #expect(try await s.run(RemoteCommand(["false"], timeout: nil)).exitStatus == 1)
        let missing = try await s.run(RemoteCommand(["no-such-command-sous"], timeout: nil))
        #expect(missing.exitStatus == 127)
        #expect(missing.stderrText.contains("not found"))
        let killed = try await s.run(.shell("kill -KILL $$", timeout: nil))
        #expect(killed.exitStatus == nil)
        #expect(killed.exitSignal == "KILL")
        let who = try await s.run(RemoteCommand(["id", "-un"], timeout: nil))
        #expect(who.stdoutText == "soustest\n")
    }

    @Test func largeStdoutAndStderrAtOnce() async throws {
        let s = try await session()
        let r = try await s.run(.shell("(yes a | head -c 10485760) & (yes b | head -c 10485760 >&2); wait", timeout: nil))
        #expect(r.exitStatus == 0)
        #expect(r.stdout.count == 10_485_760)
        #expect(r.stderr.count == 10_485_760)
        #expect(r.stdout.allSatisfy { $0 == UInt8(ascii: "a") || $0 == UInt8(ascii: "\n") })
        #expect(r.stderr.allSatisfy { $0 == UInt8(ascii: "b") || $0 == UInt8(ascii: "\n") })
    }

    @Test func stdinCarriesDataNotTheCommandLine() async throws {
        let s = try await session()
        let secret = "sk-\(UUID().uuidString)"
        let r = try await s.run(.shell("cat > /dev/null; cat /proc/self/cmdline; read -r x < /dev/null || true", stdin: Data(secret.utf8), timeout: nil))
        #expect(!r.stdoutText.contains(secret))
        let echo = try await s.run(RemoteCommand(["cat"], stdin: Data(secret.utf8), timeout: nil))
        #expect(echo.stdoutText == secret)
    }

    @Test func timeoutEndsTheRemoteCommand() async throws {
        let s = try await session()
        let marker = "300.\(UInt32.random(in: 1000...99999))"
        let clock = ContinuousClock()
        let start = clock.now
        let e = await sshError { _ = try await s.run(RemoteCommand(["sleep", marker], timeout: .seconds(1))) }
        #expect(e?.kind == .commandTimeout)
        #expect(clock.now - start < .seconds(120), "a hang guard far below the command's 300 s; the kind says the timeout ended it")
        let left = try await s.run(.shell("pgrep -f '^sleep \(marker)' || true", timeout: nil))
        #expect(left.stdoutText == "")
    }

    @Test func nonASCIICommandsAndOutput() async throws {
        let s = try await session()
        let text = "héllo 漢字 🚀 'quoted' $(not run) `nor this`"
        let r = try await s.run(RemoteCommand(["printf", "%s", text], timeout: nil))
        #expect(r.stdoutText == text)
    }

    /// 10,000 random and hostile strings through ShellQuote and a remote `printf %s`, byte for byte.
    @Test func hostileStringsRoundTrip() async throws {
        let s = try await session()
        var gen = HostileStrings(seed: 7)
        let inputs = (0..<10_000).map { _ in gen.string() }
        for start in stride(from: 0, to: inputs.count, by: 1000) {
            let batch = Array(inputs[start..<min(start + 1000, inputs.count)])
            let r = try await s.run(RemoteCommand(["printf", "%s\\0"] + batch, timeout: nil))
            #expect(r.exitStatus == 0)
            var parts = r.stdout.split(separator: 0, omittingEmptySubsequences: false)
            parts.removeLast()
            #expect(parts.count == batch.count)
            for (got, want) in zip(parts, batch) where Data(got) != Data(want.utf8) {
                Issue.record("remote printf gave \(String(decoding: got, as: UTF8.self).debugDescription) for \(want.debugDescription)")
            }
        }
    }

    @Test func unknownHostIsRefusedWithItsFingerprint() async throws {
        let empty = harness.dir + "/empty_known_hosts"
        let e = await sshError { _ = try await harness.transport(knownHosts: empty).connect(harness.node(0)) }
        #expect(e?.kind == .hostKeyUnknown)
        let expected = try harness.fingerprint(harness.hostKeys[0])
        #expect(e?.detail.contains(expected) == true, "\(e?.detail ?? "")")
        #expect(e?.hint?.contains("--accept-new") == true)
        #expect(!FileManager.default.fileExists(atPath: empty), "refusing must not write known_hosts")
    }

    @Test func acceptNewWritesTheEntryOnce() async throws {
        let file = harness.dir + "/tofu_known_hosts"
        _ = try await harness.transport(knownHosts: file, acceptNew: true).connect(harness.node(1))
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.hasPrefix("\(harness.addresses[1]) ssh-ed25519 "))
        #expect(text.split(separator: "\n").count == 1)
        // Now known: a plain connect succeeds and writes nothing more.
        _ = try await harness.transport(knownHosts: file).connect(harness.node(1))
        #expect(try String(contentsOfFile: file, encoding: .utf8) == text)
    }

    /// `ssh-keygen -H` entries (`|1|salt|hash`), as HashKnownHosts writes them.
    @Test func hashedKnownHostsEntriesWork() async throws {
        let hashed = harness.dir + "/hashed_known_hosts"
        try sh("cp \(harness.knownHosts) \(hashed) && ssh-keygen -q -H -f \(hashed) && rm -f \(hashed).old")
        #expect(try String(contentsOfFile: hashed, encoding: .utf8).hasPrefix("|1|"))
        let s = try await harness.transport(knownHosts: hashed).connect(harness.node(1))
        #expect(try await s.run(RemoteCommand(["echo", "ok"], timeout: nil)).stdoutText == "ok\n")
        await s.close()
    }

    /// An IPv6 node on a port other than 22: the address family comes from getaddrinfo, the known_hosts name is `[::1]:PORT`.
    @Test func anIPv6NodeOnAnotherPort() async throws {
        let port = Int.random(in: 20000...40000)
        let pid = try harness.startExtraSSHD(host: "::1", port: port, hostKey: harness.hostKeys[0])
        defer { harness.stopExtra(pid) }
        var node = harness.node(0)
        node.host = "::1"
        node.port = port
        let file = harness.dir + "/v6_known_hosts"
        let s = try await harness.transport(knownHosts: file, acceptNew: true).connect(node)
        #expect(try await s.run(RemoteCommand(["echo", "v6"], timeout: nil)).stdoutText == "v6\n")
        await s.close()
        #expect(try String(contentsOfFile: file, encoding: .utf8).hasPrefix("[::1]:\(port) ssh-ed25519 "))
        // Known now: a plain connect succeeds.
        let again = try await harness.transport(knownHosts: file).connect(node)
        await again.close()
    }

    @Test func changedHostKeyIsRefusedLoudly() async throws {
        try harness.rotateHostKey(index: 1)
        for accept in [false, true] {
            let e = await sshError { _ = try await harness.transport(acceptNew: accept).connect(harness.node(1)) }
            #expect(e?.kind == .hostKeyChanged)
            #expect(e?.detail.hasPrefix("HOST KEY CHANGED for \(harness.addresses[1])") == true)
        }
    }

    @Test func wrongKeyIsRefused() async throws {
        let other = harness.dir + "/other_ed25519"
        try sh("ssh-keygen -q -t ed25519 -N '' -f \(other)")
        var node = harness.node(0)
        node.identityFile = other
        let t = SSHTransport(knownHosts: harness.knownHosts, config: SSHConfig(text: "", file: "none"), agentSocket: nil)
        var target = t.target(for: node)
        target.identityFiles = [other]
        let conn = Connection(target: target)
        #expect(throws: SSHError.self) { try conn.open() }
        do { try conn.open() } catch let e as SSHError { #expect(e.kind == .authentication); #expect(e.detail.contains(other)) }
    }

    @Test func encryptedKeyWithoutAgentNamesTheAgent() async throws {
        let enc = harness.dir + "/enc_ed25519"
        try sh("ssh-keygen -q -t ed25519 -N 'pass phrase' -f \(enc)")
        var target = harness.transport().target(for: harness.node(0))
        target.identityFiles = [enc]
        target.agentSocket = nil
        let e: SSHError? = { do { try Connection(target: target).open(); return nil } catch { return error as? SSHError } }()
        #expect(e?.kind == .encryptedKey)
        #expect(e?.hint?.contains("ssh-add \(enc)") == true)
    }

    @Test func agentAuthentication() async throws {
        let enc = harness.dir + "/agent_ed25519"
        try sh("ssh-keygen -q -t ed25519 -N 'secret words' -f \(enc) && cat \(enc).pub >> \(harness.dir)/authorized/\(SSHDHarness.user)")
        let sock = harness.dir + "/agent.sock"
        // The agent daemon keeps its stdout open: send it to a file, not to our pipe.
        try sh("ssh-agent -s -a \(sock) > /dev/null 2>&1 < /dev/null")
        defer { _ = try? sh("pkill -f 'ssh-agent -s -a \(sock)'") }
        // ssh-add reads the passphrase from SSH_ASKPASS when there is no terminal.
        try sh("printf '#!/bin/sh\\necho \"secret words\"\\n' > \(harness.dir)/askpass && chmod +x \(harness.dir)/askpass && SSH_AUTH_SOCK=\(sock) SSH_ASKPASS=\(harness.dir)/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=x ssh-add \(enc) < /dev/null")
        var target = harness.transport().target(for: harness.node(0))
        target.identityFiles = [enc]   // encrypted: only the agent can use it
        target.agentSocket = sock
        let conn = Connection(target: target)
        try conn.open()
        #expect(try conn.exec(RemoteCommand(["echo", "via-agent"], timeout: nil)).stdoutText == "via-agent\n")
    }

    /// An ssh-agent socket that accepts and never answers (say, a forwarded agent whose connection died). The
    /// agent gets half of the connect timeout, then the key files are tried; with none, the error names the agent.
    /// Before, libssh2's blocking agent I/O hung the connect for good.
    @Test func aStalledAgentDoesNotHangTheConnect() async throws {
        let agent = try SilentListener(unixPath: harness.dir + "/stalled-agent.sock")
        defer { agent.close() }
        var target = harness.transport(timeout: .seconds(4)).target(for: harness.node(0))
        target.agentSocket = agent.path
        let clock = ContinuousClock()

        var start = clock.now
        let withKey = openWithin(.seconds(120), Connection(target: target))
        #expect(withKey != nil, "the connect hung on the agent")
        if case .failure(let e)? = withKey { Issue.record("with the client key: \(e)") }
        #expect(clock.now - start < .seconds(60), "a hang guard: the 4 s connect timeout is asserted below")

        target.identityFiles = []
        start = clock.now
        let alone = openWithin(.seconds(120), Connection(target: target))
        #expect(alone != nil, "the connect hung on the agent")
        if case .failure(let error)? = alone, let e = error as? SSHError {
            #expect(e.kind == .authentication)
            #expect(e.exitCode == .unreachable)
            #expect(e.detail.contains("ssh-agent (\(agent.path!)) did not answer"), "\(e.detail)")
            #expect(e.hint?.contains("ssh-add -l") == true)
        } else {
            Issue.record("expected an authentication error, got \(String(describing: alone))")
        }
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(1800) && elapsed < .seconds(60), "the agent's half of the 4 s, and no more: \(elapsed)")
    }

    /// A port that accepts TCP and then says nothing (a hung sshd, or no SSH server at all) is unreachable
    /// (exit 3) once the connect timeout has passed. Before, the handshake's timeout was a command timeout (exit 1).
    @Test func aSilentServerIsUnreachableWithinTheTimeout() async throws {
        let silent = try SilentListener()
        defer { silent.close() }
        var node = harness.node(0)
        node.host = "127.0.0.1"
        node.port = silent.port
        let connection = Connection(target: harness.transport(timeout: .milliseconds(1500)).target(for: node))
        let clock = ContinuousClock()
        let start = clock.now
        let result = openWithin(.seconds(120), connection)
        let elapsed = clock.now - start
        if case .failure(let error)? = result, let e = error as? SSHError {
            #expect(e.kind == .connectTimeout, "\(e.kind): \(e.detail)")
            #expect(e.exitCode == .unreachable)
            #expect(e.detail.contains("SSH handshake"), "\(e.detail)")
            #expect(e.detail.contains("127.0.0.1:\(silent.port)"), "\(e.detail)")
        } else {
            Issue.record("expected a connect timeout, got \(String(describing: result))")
        }
        #expect(elapsed >= .milliseconds(1400) && elapsed < .seconds(60), "the timeout is waited for; the upper bound is a hang guard: \(elapsed)")
    }

    /// An upload that fails half-way (the node's disk is full: a 64 KiB tmpfs) leaves no temporary file behind.
    @Test func aFailedUploadLeavesNoTemporaryFile() async throws {
        let full = harness.dir + "/tiny"
        try sh("mkdir -p \(full) && mount -t tmpfs -o size=64k,mode=1777 sous-tiny \(full)")
        defer { _ = try? sh("umount -l \(full)") }   // lazy: the node's sftp-server may still be exiting
        let s = try await session()
        let e = await sshError { try await s.upload(Data(count: 1 << 20), to: "\(full)/big.bin", mode: 0o644, sudo: false) }
        #expect(e?.kind == .uploadFailed, "\(e?.detail ?? "no error")")
        #expect(e?.detail.contains("\(full)/.big.bin.sous-") == true, "\(e?.detail ?? "")")
        #expect(try FileManager.default.contentsOfDirectory(atPath: full) == [])
        await s.close()
    }

    @Test func sudoWithoutPasswordAndTheClearErrorWhenItWantsOne() async throws {
        let s = try await session()
        #expect(try await s.run(RemoteCommand(["id", "-u"], timeout: nil, sudo: true)).stdoutText == "0\n")
        let plain = try await session(0, user: SSHDHarness.plainUser)
        let e = await sshError { _ = try await plain.run(RemoteCommand(["true"], timeout: nil, sudo: true)) }
        #expect(e?.kind == .sudoPassword)
        #expect(e?.hint?.contains("NOPASSWD") == true)
    }

    /// `--ask-sudo-password`: the password goes on the sudo command's stdin, ahead of the command's own input, and
    /// never into the command line; a wrong one is the sudo error, named as a refusal.
    @Test func aSudoPasswordTravelsOnStdinOnly() async throws {
        var transport = harness.transport()
        transport.sudoPassword = Secret(SSHDHarness.sudoPassword)
        let s = try await transport.connect(harness.node(0, user: SSHDHarness.passwordUser))
        let cmd = RemoteCommand(["sh", "-c", "id -u; cat"], stdin: Data("the command's own input\n".utf8), timeout: .seconds(30), sudo: true)
        let r = try await s.run(cmd)
        #expect(r.ok && r.stdoutText == "0\nthe command's own input\n", "\(r.stdoutText) \(r.stderrText)")
        #expect(!(try cmd.commandLine(sudoPasswordOnStdin: true)).contains(SSHDHarness.sudoPassword))
        // Uploads as root go through the same sudo.
        let path = "/root/sous-sudo-password-\(UUID().uuidString.prefix(8))"
        try await s.upload(Data("x\n".utf8), to: path, mode: 0o600, sudo: true)
        #expect(try await s.run(RemoteCommand(["sh", "-c", "stat -c %U \"$1\"; rm -f \"$1\"", "sous", path], timeout: .seconds(30), sudo: true)).stdoutText == "root\n")
        await s.close()
        // Without it, and with a wrong one.
        let without = try await harness.transport().connect(harness.node(0, user: SSHDHarness.passwordUser))
        let missing = await sshError { _ = try await without.run(RemoteCommand(["true"], timeout: .seconds(30), sudo: true)) }
        #expect(missing?.kind == .sudoPassword && missing?.hint?.contains("--ask-sudo-password") == true)
        await without.close()
        transport.sudoPassword = Secret("wrong")
        let wrong = try await transport.connect(harness.node(0, user: SSHDHarness.passwordUser))
        let refused = await sshError { _ = try await wrong.run(RemoteCommand(["true"], timeout: .seconds(30), sudo: true)) }
        #expect(refused?.kind == .sudoPassword && refused?.detail.contains("refused the password") == true, "\(refused?.detail ?? "")")
        await wrong.close()
    }

    @Test func uploadSetsModeAndReplacesAtomically() async throws {
        let s = try await session()
        let path = "/home/\(SSHDHarness.user)/sous-upload-test.env"
        try await s.upload(Data("A=1\n".utf8), to: path, mode: 0o600, sudo: false)
        let first = try await s.run(.shell("stat -c '%a %i' \(path); cat \(path)", timeout: nil))
        #expect(first.stdoutText.hasPrefix("600 "))
        #expect(first.stdoutText.hasSuffix("A=1\n"))
        try await s.upload(Data("B=2\n".utf8), to: path, mode: 0o640, sudo: false)
        let second = try await s.run(.shell("stat -c '%a %i' \(path); cat \(path); ls -a /home/\(SSHDHarness.user) | grep -c sous- || true", timeout: nil))
        let lines = second.stdoutText.split(separator: "\n")
        #expect(lines[0].hasPrefix("640 "))
        #expect(lines[0] != first.stdoutText.split(separator: "\n")[0], "a rename gives the file a new inode")
        #expect(lines[1] == "B=2")
        #expect(lines[2] == "1", "only the uploaded file itself remains, no temporary files")

        let rootPath = "/etc/sous-test-\(UInt32.random(in: 0...99999)).conf"
        try await s.upload(Data("[Service]\nOOMScoreAdjust=-1000\n".utf8), to: rootPath, mode: 0o644, sudo: true)
        let owned = try await s.run(.shell("stat -c '%U %a' \(rootPath); cat \(rootPath); sudo -n rm -f \(rootPath)", timeout: nil))
        #expect(owned.stdoutText == "root 644\n[Service]\nOOMScoreAdjust=-1000\n")
    }

    @Test func closedPortFailsFast() async throws {
        var node = harness.node(0)
        node.port = 2
        let clock = ContinuousClock()
        let start = clock.now
        let e = await sshError { _ = try await harness.transport().connect(node) }
        #expect(e?.kind == .unreachable)
        #expect(e?.detail.contains("Connection refused") == true)
        #expect(clock.now - start < .seconds(30), "a hang guard")
        #expect(e?.exitCode == .unreachable)
    }

    @Test func fanOutReportsEveryNode() async throws {
        var nodes = [harness.node(0), harness.node(1)]
        var dead = harness.node(0, name: "dead")
        dead.port = 2
        nodes.append(dead)
        let t = harness.transport()
        let outcomes = await fanOut(nodes) { node in
            let s = try await t.connect(node)
            return try await s.run(RemoteCommand(["hostname"], timeout: nil)).exitStatus
        }
        #expect(outcomes.map(\.node.name) == ["node0", "node1", "dead"])
        #expect(try outcomes[0].result.get() == 0)
        #expect(try outcomes[1].result.get() == 0)
        #expect((try? outcomes[2].result.get()) == nil)
    }
}

/// An address that never answers: it lives behind a veth into a network namespace this test creates, and its
/// neighbour entry points at a MAC nobody has, so a SYN is dropped without a reply. The whole 10.214.0.0/16
/// range is first made unreachable, so nothing can leak to a real network.
@Suite(.serialized) struct SilentAddressTests {
    @Test func addressThatNeverAnswersFailsWithinTheTimeout() async throws {
        let ns = "sous-bh-\(getpid())", host = "sousbh\(getpid() % 10000)"
        let setup = """
        ip route replace unreachable 10.214.0.0/16
        ip netns add \(ns)
        ip link add \(host) type veth peer name \(host)p
        ip link set \(host)p netns \(ns)
        ip addr add 10.214.7.1/30 dev \(host)
        ip link set \(host) up
        ip -n \(ns) link set \(host)p up
        ip neigh replace 10.214.7.2 lladdr 02:00:00:5e:00:02 dev \(host) nud permanent
        """
        defer { _ = try? sh("ip link del \(host); ip netns del \(ns); ip route del unreachable 10.214.0.0/16") }
        try sh("set -e\n" + setup)
        let node = NodeSpec(name: "silent", host: "10.214.7.2", port: 22, user: "nobody", interconnectIP: "10.214.7.2", role: .head)
        let transport = SSHTransport(knownHosts: "/dev/null", connectTimeout: .milliseconds(1500), config: SSHConfig(text: "", file: "none"), agentSocket: nil)
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try await transport.connect(node)
            Issue.record("connected to an address that should never answer")
        } catch let e as SSHError {
            #expect(e.kind == .connectTimeout)
            #expect(e.detail == "no answer from 10.214.7.2:22 within 1.5 seconds")
        }
        // The deadline is asserted by the error's text; the upper bound only guards against a hang (the suite runs
        // beside the others on 2 cores, where this took up to 10 s of wall time).
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(1400) && elapsed < .seconds(30))
    }
}
