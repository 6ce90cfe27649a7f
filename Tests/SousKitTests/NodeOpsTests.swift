import Foundation
import Testing
@testable import SousKit

/// The commands layer: exact argv, data always a separate argument, and the scripts run for real by `sh`.
@Suite struct NodeOpsTests {
    /// Runs the exact line an SSH exec request carries, with `exec` printing its arguments instead of running them.
    func argvAsTheNodeSeesIt(_ c: RemoteCommand) throws -> [String] {
        let line = try c.commandLine()
        #expect(line.hasPrefix("exec "))
        let r = try run("/bin/sh", ["-c", "exec printf '%s\\0' " + line.dropFirst(5)])
        var parts = r.out.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        parts.removeLast()
        return parts
    }

    @Test func everyArgvBuiltFromHostileValuesReachesTheNodeByteForByte() throws {
        var gen = HostileStrings(seed: 7)
        for _ in 0..<60 {
            let (a, b, c) = (gen.string(), gen.string(), gen.string())
            let commands: [RemoteCommand] = [
                DockerOps.imageID(a), DockerOps.pull(a), EnvFileOps.makeStateDir(owner: a),
                PreflightOps.check(interface: a, memoryFraction: 0.8, peers: [b, c]), LinkOps.reach(interface: a, peers: [b, c]),
                HardenOps.sshdState(unit: a), HardenOps.restartSSHD(unit: a), JournalOps.append(b, at: a),
                ClusterLock.create(.mine(what: b, ttl: .seconds(5)), at: a), ClusterLock.replace(.mine(what: b, ttl: .seconds(5)), expected: c, at: a),
            ]
            for cmd in commands {
                let seen = try argvAsTheNodeSeesIt(cmd)
                let wrapped = (cmd.sudo ? ["sudo", "-n", "--"] : []) + (cmd.timeout != nil ? ["timeout", "-k", "5", seen[cmd.sudo ? 6 : 3]] : []) + cmd.argv
                #expect(seen == wrapped)
            }
        }
    }

    @Test func everyCommandOfTheLayerHasATimeout() throws {
        let lease = Lease.mine(what: "x", ttl: .seconds(5))
        let all: [RemoteCommand] = [
            DockerOps.imageID("i"), DockerOps.pull("i"), DockerOps.remove(), DockerOps.current(), DockerOps.state(), DockerOps.configImage(),
            DockerOps.args(), DockerOps.inspect(), DockerOps.logs(tail: 3), DockerOps.startupArgsLine(),
            PreflightOps.check(interface: "e", memoryFraction: 0.5, peers: []), EnvFileOps.state(), EnvFileOps.makeStateDir(owner: "u"),
            HardenOps.sshUnit(), HardenOps.sshdState(unit: "ssh"), HardenOps.restartSSHD(unit: "ssh"), HardenOps.earlyoomState(),
            HardenOps.installEarlyoom(), HardenOps.startEarlyoom(restart: true), StatusOps.read(), LinkOps.reach(interface: "e", peers: []),
            LinkOps.gidIndex(), JournalOps.append("x"), JournalOps.read(), ClusterLock.create(lease), ClusterLock.replace(lease, expected: ""),
            ClusterLock.release(lease), ClusterLock.forceRemove(),
        ]
        for c in all { #expect(c.timeout != nil, "\(c.key)") }
    }

    @Test func dockerCommandsAreExact() {
        #expect(DockerOps.imageID("vllm/vllm-openai:v0.24.0").argv == ["docker", "image", "inspect", "--format", "{{.Id}}", "vllm/vllm-openai:v0.24.0"])
        #expect(DockerOps.logs(tail: 15).argv == ["docker", "logs", "--tail", "15", "sous-vllm"])
        #expect(DockerOps.remove().argv == ["docker", "rm", "-f", "sous-vllm"])
        #expect(DockerOps.currentLine(imageID: "sha256:ab", serveArgv: ["serve", "m/x", "--a=b/c"]) == #"true sha256:ab ["serve","m/x","--a=b/c"]"#)
    }

    @Test func parsersReadRecordedOutputs() {
        let status = StatusOps.parse("running vllm/vllm-openai:v0.24.0\n1\n-1000\nactive\n{\"event\":\"up\"}\n")
        #expect(status == StatusOps.NodeState(container: "running", image: "vllm/vllm-openai:v0.24.0", gpuProcesses: 1, sshdOOMScoreAdj: "-1000",
                                              earlyoom: "active", lastJournalLine: "{\"event\":\"up\"}"))
        #expect(StatusOps.parse("absent -\n0\n?\ninactive\n\n").lastJournalLine == nil)
        let link = LinkOps.parseReach(.ok("9000\nok 192.168.100.11\nunreachable 192.168.100.12\n"))
        #expect(link.mtu == "9000" && link.peers == ["ok 192.168.100.11", "unreachable 192.168.100.12"])
        #expect(LinkOps.parseGIDIndex(.ok("/etc/environment\n0\n")) && LinkOps.parseGIDIndex(.ok("1\n")) && !LinkOps.parseGIDIndex(.ok("0\n")))
        let early = HardenOps.parseEarlyoom(.ok("installed\n\(sha256Hex(Harden.earlyoomDefaults))\nenabled\ninactive\n"))
        #expect(!early.ok && early.missing == ["not active"])
        #expect(HardenOps.parseSSHDState(.ok("[Service]\n---\n-17\n")) == ("[Service]\n", "-17"))
        let rest = sha256Hex("A=1\n")
        #expect(EnvFileOps.matches(.ok(sha256Hex("A=1\n") + "\n600\n" + rest + "\n"), text: "A=1\n") && !EnvFileOps.matches(.ok(sha256Hex("A=1\n") + "\n644\n" + rest + "\n"), text: "A=1\n"))
        // Only the engine-ready timeout differs: written for the next start, no restart for it.
        let old = "A=1\nVLLM_ENGINE_READY_TIMEOUT_S=1860\n", new = "A=1\nVLLM_ENGINE_READY_TIMEOUT_S=3660\n"
        let state = CommandResult.ok(sha256Hex(old) + "\n600\n" + rest + "\n")
        #expect(!EnvFileOps.matches(state, text: new) && EnvFileOps.matchesButReadyTimeout(state, text: new))
        #expect(!EnvFileOps.matchesButReadyTimeout(state, text: "A=2\nVLLM_ENGINE_READY_TIMEOUT_S=1860\n"))
    }

    /// check-link's script with an address that is shell: it is a word, never run.
    @Test func aHostilePeerAddressIsNeverRun() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sous-link-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cmd = LinkOps.reach(interface: "lo; touch \(dir)/iface", peers: ["127.0.0.1 $(touch \(dir)/peer)", "`touch \(dir)/tick`"])
        let r = try run("/bin/sh", ["-c", String(try cmd.commandLine())])
        #expect(r.status == 0, "\(r.err)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "a value ran as shell")
        #expect(String(decoding: r.out, as: UTF8.self).contains("unreachable 127.0.0.1 $(touch"))
    }

    func tempFile() -> String { FileManager.default.temporaryDirectory.appendingPathComponent("sous-\(UUID().uuidString)").path }

    /// The lock's scripts, run by `sh` on a real file: created once, replaced only when unchanged, released only by its holder.
    @Test func theLockScriptsHoldTheirPromises() throws {
        let path = tempFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        func sh(_ c: RemoteCommand) throws -> (Int32, String) {
            let r = try run("/bin/sh", ["-c", String(try c.commandLine())], stdin: c.stdin)
            return (r.status, String(decoding: r.out, as: UTF8.self))
        }
        let mine = Lease.mine(what: "roll", ttl: .seconds(60)), theirs = Lease.mine(what: "up", ttl: .seconds(60))
        #expect(try sh(ClusterLock.create(mine, at: path)).0 == 0)
        let second = try sh(ClusterLock.create(theirs, at: path))
        #expect(second.0 == 10 && second.1 == mine.text, "the second gets the holder")
        #expect(try sh(ClusterLock.replace(theirs, expected: theirs.text, at: path)).0 == 10, "no takeover of a lock that changed")
        _ = try sh(ClusterLock.release(theirs, at: path))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == mine.text, "only the holder releases")
        var renewed = mine
        renewed.expires += 600
        #expect(try sh(ClusterLock.replace(renewed, expected: mine.text, at: path)).0 == 0)
        _ = try sh(ClusterLock.release(renewed, at: path))
        #expect(!FileManager.default.fileExists(atPath: path))
        // The temporary files are the lock's siblings: one directory level (walking /tmp's subtree fails while other tests remove theirs).
        let siblings = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        #expect(!siblings.contains { $0.hasPrefix((path as NSString).lastPathComponent + ".") }, "no temporary file left")
    }

    @Test func staleLeasesAreToldFromLiveOnes() {
        var lease = Lease.mine(what: "up", ttl: .seconds(60))
        #expect(Lease.staleness(lease.text) == nil)
        #expect(Lease.staleness(lease.text, processAlive: { _ in false })?.contains("no longer running on this machine") == true)
        lease.expires = Date().timeIntervalSince1970 - 5
        #expect(Lease.staleness(lease.text)?.contains("expired") == true)
        #expect(Lease.staleness("")?.contains("empty") == true)
        #expect(Lease.staleness("by root@x (pid 1)")?.contains("not a lease") == true)
    }

    /// A journal whose last line was cut short: the next entry is appended on its own line, and reading warns
    /// about the broken one instead of losing the new one.
    @Test func aTruncatedJournalLineDoesNotSwallowTheNextEntry() throws {
        let path = tempFile()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try #"{"event":"up","image":"a:1"}"#.appending("\n{\"event\":\"roll\",\"fro").write(toFile: path, atomically: true, encoding: .utf8)
        let line = try JournalOps.line(event: .up, ["image": "b:2", "finished_at": "now"])
        let c = JournalOps.append(line, at: path)
        #expect(try run("/bin/sh", ["-c", String(try c.commandLine())], stdin: c.stdin).status == 0)
        let text = try run("/bin/sh", ["-c", String(try JournalOps.read(at: path).commandLine())]).out
        let (entries, warnings) = JournalOps.parse(String(decoding: text, as: UTF8.self))
        #expect(entries.map(\.image) == ["a:1", "b:2"])
        #expect(warnings.count == 1 && warnings[0].hasPrefix("journal line 2 is not an entry"))
        #expect(entries.last?.sous_version == SousVersion.current)
    }

    @Test func durations() throws {
        #expect(try Duration.parse("90s") == .seconds(90))
        #expect(try Duration.parse("30m") == .seconds(1800))
        #expect(try Duration.parse("1h") == .seconds(3600))
        #expect(try Duration.parse("500ms") == .milliseconds(500))
        #expect(try Duration.parse("1.5") == .milliseconds(1500))
        for bad in ["nan", "inf", "1e300", "-1", "0", "abc", "", "5d", "0x10", "1e3"] {
            #expect(throws: UsageError.self, "\(bad)") { try Duration.parse(bad) }
        }
    }
}
