import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Local process helpers for the sim (posix_spawn: Foundation's Process stalls on long-running children,
/// and a child inherits the spawning thread's blocked signals unless they are reset).
public enum Local {
    public struct Failed: Error, CustomStringConvertible {
        var command: String, status: Int32, output: String
        public var description: String { "`\(command)` failed (\(status)): \(output.trimmingCharacters(in: .whitespacesAndNewlines))" }
    }

    /// Starts a program; `detach` puts it in its own session (a daemon that outlives us).
    public static func spawn(_ path: String, _ args: [String], argv0: String? = nil, env: [String]? = nil,
                      output: String = "/dev/null", append: Bool = false, detach: Bool = false) throws -> Int32 {
        var pid: Int32 = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), all = sigset_t()
        sigemptyset(&empty)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if detach { flags |= 0x80 /* POSIX_SPAWN_SETSID */ }
        posix_spawnattr_setflags(&attr, Int16(flags))
        let argv = ([argv0 ?? path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = env.map { $0.map { strdup($0) } + [nil] }
        defer { envp?.forEach { free($0) } }
        let rc = envp.map { e in e.withUnsafeBufferPointer { posix_spawn(&pid, path, &actions, &attr, argv, UnsafeMutablePointer(mutating: $0.baseAddress)) } }
            ?? posix_spawn(&pid, path, &actions, &attr, argv, environ)
        guard rc == 0 else { throw Failed(command: path, status: rc, output: String(cString: strerror(rc))) }
        return pid
    }

    /// Runs a command to completion; returns status and combined output.
    @discardableResult
    public static func run(_ path: String, _ args: [String], check: Bool = true) throws -> (status: Int32, output: String) {
        let out = NSTemporaryDirectory() + "sous-\(UUID().uuidString)"
        defer { unlink(out) }
        let pid = try spawn(path, args, output: out)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        if check && code != 0 { throw Failed(command: ([path] + args).joined(separator: " "), status: code, output: text) }
        return (code, text)
    }

    @discardableResult
    public static func sh(_ script: String, check: Bool = true) throws -> (status: Int32, output: String) {
        try run("/bin/sh", ["-c", script], check: check)
    }

    public static func alive(_ pid: Int32) -> Bool {
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(close, offsetBy: 2)] != "Z"
    }

    /// SIGTERM, then SIGKILL after `grace`; waits until gone or a zombie.
    public static func stop(_ pid: Int32, grace: Double = 3) {
        guard alive(pid) else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while alive(pid) && Date() < deadline { usleep(20_000) }
        if alive(pid) { kill(pid, SIGKILL); while alive(pid) { usleep(10_000) } }
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
    }

    /// Live processes one of whose arguments is exactly `argument` (found through /proc).
    public static func processes(withArgument argument: String) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return data.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == argument } && alive(pid)
        }
    }

    public static var selfExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
