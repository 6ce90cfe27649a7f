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

    /// The ssh unit's name: `ssh` on Ubuntu / DGX OS, `sshd` elsewhere.
    static let sshUnitScript = "if systemctl cat ssh.service >/dev/null 2>&1; then echo ssh; else echo sshd; fi"

    /// Runs on one node; with `check`, only reports (status `changed` means it would change).
    public static func run(_ s: NodeSession, check: Bool) async throws -> NodeReport {
        let clock = ContinuousClock()
        var steps: [StepRecord] = []
        func add(_ name: String, _ status: StepStatus, _ detail: String, _ start: ContinuousClock.Instant) {
            steps.append(StepRecord(step: name, status: status, detail: detail, seconds: ((clock.now - start).seconds * 1000).rounded() / 1000))
        }
        func sudo(_ script: String) async throws -> CommandResult {
            try await s.run(.shell(script, timeout: .seconds(300), sudo: true))
        }

        // 1. sshd: drop-in present and the running sshd at -1000.
        var t = clock.now
        let unit = try await s.run(.shell(sshUnitScript)).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let dropInPath = "/etc/systemd/system/\(unit).service.d/\(dropInName)"
        let readScore = "pid=$(systemctl show -p MainPID --value \(unit)); cat /proc/$pid/oom_score_adj"
        let have = try await sudo("cat \(dropInPath) 2>/dev/null; echo ---; \(readScore)")
        let parts = have.stdoutText.components(separatedBy: "---\n")
        let score = parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespacesAndNewlines) : "?"
        if parts.first == dropIn && score == "-1000" {
            add("sshd oom", .ok, "\(unit).service OOMScoreAdjust=-1000, running sshd at -1000", t)
        } else if check {
            add("sshd oom", .changed, "running sshd at \(score)" + (parts.first == dropIn ? "" : ", drop-in missing"), t)
        } else {
            try await s.upload(Data(dropIn.utf8), to: dropInPath, mode: 0o644, sudo: true)
            // Existing SSH sessions survive a restart of the listening sshd. With socket activation
            // (ssh.socket on Ubuntu 24.04) the service is restarted the same way.
            let r = try await sudo("systemctl daemon-reload && systemctl restart \(unit) && sleep 0.2 && \(readScore)")
            let now = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            if !r.ok || now != "-1000" {
                add("sshd oom", .failed, "after restart the running sshd is at \(now.isEmpty ? r.tail() : now)", t)
                throw UpFailure(step: "harden: sshd", node: s.node.name, cause: "OOMScoreAdjust did not take effect (oom_score_adj \(now)): \(r.tail())",
                                hint: "check `systemctl cat \(unit)` on \(s.node.name)", exitCode: .checkFailed)
            }
            add("sshd oom", .changed, "wrote \(dropInPath), restarted \(unit); running sshd at -1000", t)
        }

        // 2. earlyoom: installed, configured, enabled and active.
        t = clock.now
        let state = try await sudo("command -v earlyoom >/dev/null && echo installed; cat /etc/default/earlyoom 2>/dev/null | sha256sum | cut -d' ' -f1; systemctl is-enabled earlyoom 2>/dev/null; systemctl is-active earlyoom 2>/dev/null; true")
        let lines = state.stdoutText.split(separator: "\n").map(String.init)
        let installed = lines.first == "installed"
        let configOK = lines.contains(sha256Hex(earlyoomDefaults))
        let enabled = lines.contains("enabled"), active = lines.contains("active")
        if installed && configOK && enabled && active {
            add("earlyoom", .ok, "installed, configured, enabled, active", t)
        } else if check {
            let missing = [installed ? nil : "not installed", configOK ? nil : "config differs", enabled ? nil : "not enabled", active ? nil : "not active"].compactMap { $0 }
            add("earlyoom", .changed, missing.joined(separator: ", "), t)
        } else {
            if !installed {
                let r = try await sudo("DEBIAN_FRONTEND=noninteractive apt-get install -y -q earlyoom")
                if !r.ok { throw UpFailure(step: "harden: earlyoom", node: s.node.name, cause: "apt-get install earlyoom failed: \(r.tail())", hint: "sudo apt-get update on \(s.node.name)", exitCode: .checkFailed) }
            }
            if !configOK { try await s.upload(Data(earlyoomDefaults.utf8), to: "/etc/default/earlyoom", mode: 0o644, sudo: true) }
            let r = try await sudo("systemctl enable earlyoom >/dev/null 2>&1; systemctl \(configOK ? "start" : "restart") earlyoom && sleep 0.2 && systemctl is-active earlyoom")
            if r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) != "active" {
                throw UpFailure(step: "harden: earlyoom", node: s.node.name, cause: "earlyoom is not active: \(r.tail())", hint: "journalctl -u earlyoom on \(s.node.name)", exitCode: .checkFailed)
            }
            add("earlyoom", .changed, (installed ? "" : "installed, ") + (configOK ? "" : "configured, ") + "enabled and active", t)
        }
        return NodeReport(node: s.node.name, steps: steps)
    }
}
