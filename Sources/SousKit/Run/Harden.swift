import Foundation

/// Keeps a node reachable under memory pressure: sshd never chosen by the OOM killer (a systemd drop-in with
/// OOMScoreAdjust=-1000, verified on the running sshd), and earlyoom acting before the kernel does, avoiding
/// sshd, systemd, dockerd and containerd and preferring vLLM, Python and Ray.
public enum Harden {
    public static let dropInName = "sous-oom.conf"
    public static let dropIn = "[Service]\nOOMScoreAdjust=-1000\n"
    public static let earlyoomDefaults = """
    # Written by sous: act before the kernel OOM killer; never pick sshd or the container runtime, pick the engine first.
    # systemd splits $EARLYOOM_ARGS at whitespace without removing quotes, so the patterns carry none.
    EARLYOOM_ARGS="-r 3600 -m 4 -s 100 --avoid (^|/)(sshd|systemd|dockerd|containerd)$ --prefer (^|/)(vllm|VLLM.*|python[0-9.]*|ray|raylet)$"

    """

    /// What harden found or did on one node.
    public struct NodeReport: Sendable, Encodable {
        public var node: String
        public var steps: [StepRecord]
        public var drift: Bool { steps.contains { $0.status == .changed || $0.status == .failed } }
    }

    /// Both parts on one node; with `check`, only reports (status `changed` means it would change).
    public static func run(_ s: NodeSession, check: Bool) async throws -> NodeReport {
        NodeReport(node: s.node.name, steps: [try await sshd(s, check: check), try await earlyoom(s, check: check)])
    }

    static func record(_ name: String, _ status: StepStatus, _ detail: String, since start: ContinuousClock.Instant) -> StepRecord {
        StepRecord(step: name, status: status, detail: detail, elapsed: ContinuousClock.now - start)
    }

    /// sshd: the drop-in present and the running sshd at -1000.
    public static func sshd(_ s: NodeSession, check: Bool) async throws -> StepRecord {
        let t = ContinuousClock.now
        let unit = try await s.run(HardenOps.sshUnit()).value
        let dropInPath = HardenOps.dropInPath(unit: unit)
        let (have, score) = HardenOps.parseSSHDState(try await s.run(HardenOps.sshdState(unit: unit)))
        if have == dropIn && score == "-1000" {
            return record("sshd oom", .ok, "\(unit).service OOMScoreAdjust=-1000, running sshd at -1000", since: t)
        }
        if check { return record("sshd oom", .changed, "running sshd at \(score)" + (have == dropIn ? "" : ", drop-in missing"), since: t) }
        try await s.upload(Data(dropIn.utf8), to: dropInPath, mode: 0o644, sudo: true)
        // Existing SSH sessions survive a restart of the listening sshd. With socket activation
        // (ssh.socket on Ubuntu 24.04) the service is restarted the same way.
        let r = try await s.run(HardenOps.restartSSHD(unit: unit))
        let now = r.value
        if !r.ok || now != "-1000" {
            throw StepFailure(step: "harden: sshd", node: s.node.name, cause: "OOMScoreAdjust did not take effect (oom_score_adj \(now.isEmpty ? "?" : now)): \(r.tail())",
                              hint: "check `systemctl cat \(unit)` on \(s.node.name)", exitCode: .checkFailed)
        }
        return record("sshd oom", .changed, "wrote \(dropInPath), restarted \(unit); running sshd at -1000", since: t)
    }

    /// earlyoom: installed, configured, enabled and active.
    public static func earlyoom(_ s: NodeSession, check: Bool) async throws -> StepRecord {
        let t = ContinuousClock.now
        let state = HardenOps.parseEarlyoom(try await s.run(HardenOps.earlyoomState()))
        if state.ok { return record("earlyoom", .ok, "installed, configured, enabled, active", since: t) }
        if check { return record("earlyoom", .changed, state.missing.joined(separator: ", "), since: t) }
        if !state.installed {
            let r = try await s.run(HardenOps.installEarlyoom())
            if !r.ok { throw StepFailure(step: "harden: earlyoom", node: s.node.name, cause: "apt-get install earlyoom failed: \(r.tail())", hint: "sudo apt-get update on \(s.node.name)", exitCode: .checkFailed) }
        }
        if !state.configured { try await s.upload(Data(earlyoomDefaults.utf8), to: "/etc/default/earlyoom", mode: 0o644, sudo: true) }
        let r = try await s.run(HardenOps.startEarlyoom(restart: !state.configured))
        if r.value != "active" {
            throw StepFailure(step: "harden: earlyoom", node: s.node.name, cause: "earlyoom is not active: \(r.tail())", hint: "journalctl -u earlyoom on \(s.node.name)", exitCode: .checkFailed)
        }
        return record("earlyoom", .changed, (state.installed ? "" : "installed, ") + (state.configured ? "" : "configured, ") + "enabled and active", since: t)
    }
}
