import Foundation

/// The read-only checks `sous up` runs on each node before it changes anything.
public enum PreflightOps {
    /// sudo without a password, docker, a GPU, every peer's interconnect address, free memory. The script is
    /// fixed; the interface, the memory fraction and the peers follow it as positional arguments.
    public static func check(interface: String, memoryFraction: Double, peers: [String]) -> RemoteCommand {
        let script = """
        ifname=$1; f=$2; shift 2
        sudo -n true 2>/dev/null || { echo 'sudo: a password is required'; exit 11; }
        command -v docker >/dev/null && docker version >/dev/null 2>&1 || { echo 'docker is missing or not usable without a password (is the user in the docker group?)'; exit 12; }
        nvidia-smi -L 2>/dev/null | grep -q '^GPU' || { echo 'no GPU visible to nvidia-smi'; exit 13; }
        for ip in "$@"; do
          timeout 3 bash -c ': > "/dev/tcp/$1/22"' sous "$ip" 2>/dev/null || { echo "cannot reach the interconnect address $ip on $ifname"; exit 14; }
        done
        awk -v f="$f" '/^MemTotal/ {t=$2} /^MemAvailable/ {a=$2} END { if (a < f * t) { printf "only %.0f GiB of %.0f GiB free; the recipe takes %.0f%%\\n", a/1048576, t/1048576, f*100; exit 15 } }' /proc/meminfo
        """
        return .shell(script, args: [interface, String(memoryFraction)] + peers, timeout: .seconds(30))
    }
}

/// The engine's 0600 env file.
public enum EnvFileOps {
    /// Prints the file's sha256, its mode, and the sha256 of its lines but the engine-ready timeout's (nothing
    /// when it is missing).
    public static func state() -> RemoteCommand {
        .shell("[ -f \"$1\" ] || exit 0; sha256sum \"$1\" | cut -d' ' -f1; stat -c %a \"$1\"; grep -v \"^$2=\" \"$1\" | sha256sum | cut -d' ' -f1",
               args: [NodePaths.envFile, EngineReady.variable], timeout: .seconds(30))
    }

    /// Whether `state()` shows exactly `text` with mode 0600.
    public static func matches(_ r: CommandResult, text: String) -> Bool {
        let lines = r.stdoutText.split(separator: "\n")
        return lines.count == 3 && lines[0] == sha256Hex(text) && lines[1] == "600"
    }

    /// Whether `state()` shows `text` but for the engine-ready timeout (a start's bound, moot once it runs).
    public static func matchesButReadyTimeout(_ r: CommandResult, text: String) -> Bool {
        let lines = r.stdoutText.split(separator: "\n")
        let rest = text.split(separator: "\n", omittingEmptySubsequences: false).filter { !EngineReady.isLine($0) }.joined(separator: "\n")
        return lines.count == 3 && lines[2] == sha256Hex(rest)
    }

    /// /var/lib/sous, owned by the login user (the env file and the journal live there).
    public static func makeStateDir(owner: String) -> RemoteCommand {
        RemoteCommand(["install", "-d", "-m", "0755", "-o", owner, NodePaths.stateDir], timeout: .seconds(30), sudo: true)
    }
}

/// sshd and earlyoom, as `sous harden` keeps them.
public enum HardenOps {
    /// Prints `ssh` (Ubuntu, DGX OS) or `sshd` (elsewhere): the unit's name.
    public static func sshUnit() -> RemoteCommand {
        .shell("if systemctl cat ssh.service >/dev/null 2>&1; then echo ssh; else echo sshd; fi", timeout: .seconds(30))
    }

    public static func dropInPath(unit: String) -> String { "/etc/systemd/system/\(unit).service.d/\(Harden.dropInName)" }

    static let readScore = "pid=$(systemctl show -p MainPID --value \"$1\"); cat \"/proc/$pid/oom_score_adj\""

    /// The drop-in's content, `---`, and the running sshd's oom_score_adj.
    public static func sshdState(unit: String) -> RemoteCommand {
        .shell("cat \"$2\" 2>/dev/null; echo ---; " + readScore, args: [unit, dropInPath(unit: unit)], timeout: .seconds(30), sudo: true)
    }

    /// (drop-in content, oom_score_adj) from `sshdState`.
    public static func parseSSHDState(_ r: CommandResult) -> (dropIn: String?, score: String) {
        let parts = r.stdoutText.components(separatedBy: "---\n")
        return (parts.first, parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespacesAndNewlines) : "?")
    }

    /// Reload units, restart sshd (existing sessions survive), print the new sshd's oom_score_adj.
    public static func restartSSHD(unit: String) -> RemoteCommand {
        .shell("systemctl daemon-reload && systemctl restart \"$1\" && sleep 0.2 && " + readScore, args: [unit], timeout: .seconds(120), sudo: true)
    }

    /// `installed`, the sha256 of /etc/default/earlyoom, is-enabled, is-active (one per line, missing ones omitted).
    public static func earlyoomState() -> RemoteCommand {
        .shell("command -v earlyoom >/dev/null && echo installed; cat /etc/default/earlyoom 2>/dev/null | sha256sum | cut -d' ' -f1; systemctl is-enabled earlyoom 2>/dev/null; systemctl is-active earlyoom 2>/dev/null; true",
               timeout: .seconds(30), sudo: true)
    }

    public struct EarlyoomState: Sendable, Equatable {
        public var installed, configured, enabled, active: Bool
        public var ok: Bool { installed && configured && enabled && active }
        public var missing: [String] {
            [installed ? nil : "not installed", configured ? nil : "config differs", enabled ? nil : "not enabled", active ? nil : "not active"].compactMap { $0 }
        }
    }

    public static func parseEarlyoom(_ r: CommandResult) -> EarlyoomState {
        let lines = r.stdoutText.split(separator: "\n").map(String.init)
        return EarlyoomState(installed: lines.first == "installed", configured: lines.contains(sha256Hex(Harden.earlyoomDefaults)),
                             enabled: lines.contains("enabled"), active: lines.contains("active"))
    }

    public static func installEarlyoom() -> RemoteCommand {
        RemoteCommand(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "earlyoom"], timeout: .seconds(600), sudo: true)
    }

    /// Enable and (re)start earlyoom, then print whether it is active.
    public static func startEarlyoom(restart: Bool) -> RemoteCommand {
        .shell("systemctl enable earlyoom >/dev/null 2>&1; systemctl \"$1\" earlyoom && sleep 0.2 && systemctl is-active earlyoom",
               args: [restart ? "restart" : "start"], timeout: .seconds(120), sudo: true)
    }
}

/// What `sous status` reads from each node, in one command.
public enum StatusOps {
    public static func read() -> RemoteCommand {
        let script = """
        docker inspect --format '{{.State.Status}} {{.Config.Image}}' "$1" 2>/dev/null || echo absent -
        nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | grep -c . || true
        cat "/proc/$(systemctl show -p MainPID --value ssh 2>/dev/null || echo 0)/oom_score_adj" 2>/dev/null || echo ?
        systemctl is-active earlyoom 2>/dev/null || true
        tail -n 1 "$2" 2>/dev/null || true
        """
        return .shell(script, args: [NodePaths.container, JournalOps.path], timeout: .seconds(20))
    }

    public struct NodeState: Sendable, Equatable {
        public var container: String?, image: String?, gpuProcesses: Int?, sshdOOMScoreAdj: String?, earlyoom: String?, lastJournalLine: String?
    }

    public static func parse(_ text: String) -> NodeState {
        let l = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let c = (l.first ?? "").split(separator: " ").map(String.init)
        return NodeState(container: c.first, image: c.count > 1 ? c[1] : nil, gpuProcesses: l.count > 1 ? Int(l[1]) : nil,
                         sshdOOMScoreAdj: l.count > 2 ? l[2] : nil, earlyoom: l.count > 3 ? l[3] : nil,
                         lastJournalLine: l.count > 4 && !l[4].isEmpty ? l[4] : nil)
    }
}

/// What `sous check-link` reads from each node.
public enum LinkOps {
    /// The interface's MTU (or `missing`), then `ok IP` / `unreachable IP` per peer. Interface and peers are arguments.
    public static func reach(interface: String, peers: [String]) -> RemoteCommand {
        let script = """
        ifname=$1; shift
        cat "/sys/class/net/$ifname/mtu" 2>/dev/null || echo missing
        for ip in "$@"; do
          if timeout 3 bash -c ': > "/dev/tcp/$1/22"' sous "$ip" 2>/dev/null || ping -c1 -W2 -- "$ip" >/dev/null 2>&1; then echo "ok $ip"; else echo "unreachable $ip"; fi
        done
        """
        return .shell(script, args: [interface] + peers, timeout: .seconds(30))
    }

    public static func parseReach(_ r: CommandResult) -> (mtu: String, peers: [String]) {
        let lines = r.stdoutText.split(separator: "\n").map(String.init)
        return (lines.first ?? "missing", Array(lines.dropFirst()))
    }

    /// Whether NCCL_IB_GID_INDEX is set in /etc/environment, the env file or the running container.
    public static func gidIndex() -> RemoteCommand {
        .shell("grep -ls NCCL_IB_GID_INDEX /etc/environment \"$1\" 2>/dev/null; docker inspect --format '{{json .Config.Env}}' \"$2\" 2>/dev/null | grep -c NCCL_IB_GID_INDEX || true",
               args: [NodePaths.envFile, NodePaths.container], timeout: .seconds(30), sudo: true)
    }

    public static func parseGIDIndex(_ r: CommandResult) -> Bool {
        r.stdoutText.split(separator: "\n").contains { $0.hasPrefix("/") || (Int($0) ?? 0) > 0 }
    }
}
