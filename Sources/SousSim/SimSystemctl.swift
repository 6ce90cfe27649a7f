import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// The modelled `systemctl` on a simulated node (there is no systemd here): the ssh unit is the node's real
/// sshd, whose drop-ins under /etc/systemd/system/ssh.service.d take effect on `daemon-reload` + `restart`
/// (OOMScoreAdjust becomes the running sshd's /proc/PID/oom_score_adj, bind-mounted inside the node's mount
/// namespace because this machine forbids negative values); earlyoom is the real Debian binary.
public enum SimSystemctl {
    static let dir = "\(SimPaths.root)/systemd"
    static let units: Set<String> = ["ssh", "earlyoom", "docker"]

    static func fail(_ message: String, _ code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }

    static func unitName(_ arg: String) -> String {
        arg.hasSuffix(".service") ? String(arg.dropLast(8)) : arg
    }

    static func sshdPID() -> Int32 {
        let file = SimPaths.string("sshd_pid_file") ?? ""
        return (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
    }

    static func earlyoomPID() -> Int32 {
        (try? String(contentsOfFile: "\(dir)/earlyoom.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
    }

    static func mainPID(_ unit: String) -> Int32 {
        switch unit {
        case "ssh": return Local.alive(sshdPID()) ? sshdPID() : 0
        case "earlyoom": return Local.alive(earlyoomPID()) ? earlyoomPID() : 0
        default: return 0
        }
    }

    static func requireRoot(_ verb: String, _ unit: String) {
        if getuid() != 0 { fail("Failed to \(verb) \(unit).service: Access denied\nSee system logs and 'systemctl status \(unit).service' for details.") }
    }

    public static func main(_ argv: [String]) -> Never {
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var args = argv.filter { !["--no-pager", "-q", "--quiet"].contains($0) }
        guard !args.isEmpty else { fail("systemctl: missing verb") }
        let verb = args.removeFirst()
        let now = args.contains("--now")
        args.removeAll { $0 == "--now" }
        switch verb {
        case "daemon-reload":
            if getuid() != 0 { fail("Failed to reload daemon: Access denied") }
            // What a reload loads: the ssh unit's OOMScoreAdjust from its drop-ins.
            let dropins = "/etc/systemd/system/ssh.service.d"
            var value = "0"
            for f in ((try? FileManager.default.contentsOfDirectory(atPath: dropins)) ?? []).sorted() where f.hasSuffix(".conf") {
                for line in ((try? String(contentsOfFile: "\(dropins)/\(f)", encoding: .utf8)) ?? "").split(separator: "\n") where line.hasPrefix("OOMScoreAdjust=") {
                    value = String(line.dropFirst("OOMScoreAdjust=".count))
                }
            }
            try? value.write(toFile: "\(dir)/ssh.oom", atomically: true, encoding: .utf8)
            exit(0)
        case "cat":
            let u = unitName(args.first ?? "")
            guard units.contains(u) else { fail("No files found for \(u).service.") }
            print("# /lib/systemd/system/\(u).service (modelled by sous sim)\n[Service]\nExecStart=/usr/sbin/\(u)")
            exit(0)
        case "show":
            let u = unitName(args.last ?? "")
            let value = args.contains("--value")
            print(value ? "\(mainPID(u))" : "MainPID=\(mainPID(u))")
            exit(0)
        case "is-active":
            let u = unitName(args.first ?? "")
            let active = u == "ssh.socket" ? false : mainPID(u) != 0
            print(active ? "active" : "inactive")
            exit(active ? 0 : 3)
        case "is-enabled":
            let u = unitName(args.first ?? "")
            let enabled = u == "ssh" || FileManager.default.fileExists(atPath: "\(dir)/\(u).enabled")
            print(enabled ? "enabled" : "disabled")
            exit(enabled ? 0 : 1)
        case "enable", "disable":
            for a in args {
                let u = unitName(a)
                requireRoot(verb, u)
                if verb == "enable" { _ = FileManager.default.createFile(atPath: "\(dir)/\(u).enabled", contents: nil) } else { try? FileManager.default.removeItem(atPath: "\(dir)/\(u).enabled") }
                if now { verb == "enable" ? start(u) : stop(u) }
            }
            exit(0)
        case "start", "restart", "stop":
            for a in args {
                let u = unitName(a)
                guard units.contains(u) else { fail("Failed to \(verb) \(u).service: Unit \(u).service not found.", 5) }
                requireRoot(verb, u)
                if verb != "start" || mainPID(u) == 0 {
                    if verb != "start" { stop(u) }
                    if verb != "stop" { start(u) }
                }
            }
            exit(0)
        default:
            fail("Unknown command verb \(verb).")
        }
    }

    static func start(_ unit: String) {
        switch unit {
        case "ssh":
            // The listening sshd keeps running (sessions survive a real restart too); the unit's
            // OOMScoreAdjust is applied to it the way systemd applies it to a new MainPID.
            let pid = sshdPID()
            let value = (try? String(contentsOfFile: "\(dir)/ssh.oom", encoding: .utf8)) ?? "0"
            let file = "\(dir)/ssh.oom_score_adj"
            try? (value.trimmingCharacters(in: .whitespacesAndNewlines) + "\n").write(toFile: file, atomically: false, encoding: .utf8)
            _ = try? Local.sh("umount -l /proc/\(pid)/oom_score_adj 2>/dev/null; mount --bind \(file) /proc/\(pid)/oom_score_adj", check: false)
        case "earlyoom":
            guard mainPID("earlyoom") == 0 else { return }
            let pid = try? Local.spawn("/bin/sh", ["-c", "set -f; [ -f /etc/default/earlyoom ] && . /etc/default/earlyoom; exec /usr/bin/earlyoom $EARLYOOM_ARGS"],
                                       output: "\(dir)/earlyoom.log", detach: true)
            try? "\(pid ?? 0)\n".write(toFile: "\(dir)/earlyoom.pid", atomically: true, encoding: .utf8)
        default: break
        }
    }

    static func stop(_ unit: String) {
        if unit == "earlyoom" { Local.stop(earlyoomPID()) }
    }
}
