import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who holds the cluster lock, until when: a lease in a file on the head (`/var/lib/sous/lock`).
public struct Lease: Codable, Sendable, Equatable {
    public var holder: String
    public var pid: Int32
    public var boot_id: String
    public var what: String
    public var started: String
    /// Seconds since 1970 (the holder's clock) after which the lease is stale.
    public var expires: Double
    /// Random: tells the holder's own lease from a look-alike.
    public var token: String

    public var text: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self) + "\n"
    }

    public var summary: String {
        "\(holder) (pid \(pid)) since \(started): \(what); lease until \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: expires)))"
    }

    /// A new lease for this process.
    public static func mine(what: String, ttl: Duration, now: Date = Date()) -> Lease {
        var g = SystemRandomNumberGenerator()
        return Lease(holder: "\(ProcessInfo.processInfo.environment["USER"] ?? "root")@\(ProcessInfo.processInfo.hostName)", pid: getpid(),
                     boot_id: localBootID, what: what, started: ISO8601DateFormatter().string(from: now),
                     expires: now.timeIntervalSince1970 + ttl.seconds, token: String(UInt64.random(in: 0...UInt64.max, using: &g), radix: 16))
    }

    static var localBootID: String {
        ((try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Why a lock found on the head may be taken over, or nil while its holder may still be working.
    public static func staleness(_ text: String, now: Date = Date(), processAlive: (Int32) -> Bool = Local.alive) -> String? {
        guard let lease = try? JSONDecoder().decode(Lease.self, from: Data(text.utf8)) else {
            return text.isEmpty ? "the lock file is empty (a write cut short, e.g. a full disk)" : "the lock file is not a lease sous wrote"
        }
        if lease.expires < now.timeIntervalSince1970 { return "the lease of \(lease.summary) expired" }
        if lease.holder.hasSuffix("@" + ProcessInfo.processInfo.hostName), !lease.boot_id.isEmpty, lease.boot_id == localBootID, !processAlive(lease.pid) {
            return "its holder \(lease.summary) is no longer running on this machine"
        }
        return nil
    }
}

/// The cluster lock: every command that changes a node holds it, from before its first change to after its last.
public enum ClusterLock {
    public static let path = NodePaths.stateDir + "/lock"

    public struct Held: SousFailure {
        public var holder: String
        public var message: String { "the cluster is locked by \(holder)" }
        public var hint: String? { "wait for that operation to finish; if its process is gone and the lease has not expired yet, add --force-unlock" }
        public var exitCode: ExitStatus { .checkFailed }
    }

    /// Creates the lock only if there is none: the lease goes to a temporary file, then `ln` puts it in place
    /// (atomic, fails when a lock exists). Exit 10 and the existing lock's content when one is there.
    static func create(_ lease: Lease, at path: String = path) -> RemoteCommand {
        let script = """
        t="$1.$$"
        cat > "$t" && [ -s "$t" ] || { rm -f "$t"; echo "cannot write $t (is the disk full?)" >&2; exit 2; }
        if ln "$t" "$1" 2>/dev/null; then rm -f "$t"; exit 0; fi
        rm -f "$t"; head -c 4096 "$1" 2>/dev/null; exit 10
        """
        return .shell(script, args: [path], stdin: Data(lease.text.utf8), timeout: .seconds(30))
    }

    /// Replaces the lock only if it still holds exactly `expected` (by sha256): a renewal, or a takeover of a
    /// stale lock that nobody else took over first. Exit 10 when it changed meanwhile.
    static func replace(_ lease: Lease, expected: String, at path: String = path) -> RemoteCommand {
        let script = """
        t="$1.$$"
        cat > "$t" && [ -s "$t" ] || { rm -f "$t"; echo "cannot write $t (is the disk full?)" >&2; exit 2; }
        if [ "$(head -c 4096 "$1" 2>/dev/null | sha256sum | cut -c1-64)" = "$2" ]; then mv -f "$t" "$1"; exit $?; fi
        rm -f "$t"; exit 10
        """
        return .shell(script, args: [path, sha256Hex(expected)], stdin: Data(lease.text.utf8), timeout: .seconds(30))
    }

    /// Removes the lock only while it holds `lease`.
    static func release(_ lease: Lease, at path: String = path) -> RemoteCommand {
        .shell("[ \"$(head -c 4096 \"$1\" 2>/dev/null | sha256sum | cut -c1-64)\" = \"$2\" ] && rm -f \"$1\"; true", args: [path, sha256Hex(lease.text)], timeout: .seconds(30))
    }

    static func forceRemove() -> RemoteCommand { RemoteCommand(["rm", "-f", "--", path], timeout: .seconds(30)) }

    /// A lease held on the head; renewed between steps, released at the end.
    public final class Holder: @unchecked Sendable {
        let head: NodeSession
        private let mutex = NSLock()
        private var lease: Lease

        init(head: NodeSession, lease: Lease) {
            self.head = head
            self.lease = lease
        }

        public var current: Lease { mutex.withLock { lease } }

        /// Extends the lease to cover `ahead` from now (the longest thing the operation does next).
        public func renew(covering ahead: Duration) async throws {
            let old = current
            var next = old
            next.expires = Date().timeIntervalSince1970 + ahead.seconds + 60
            guard next.expires > old.expires else { return }
            let r = try await head.run(ClusterLock.replace(next, expected: old.text))
            guard r.ok else {
                throw StepFailure(step: "lock", node: head.node.name, cause: r.exitStatus == 10 ? "the cluster lock was taken over by someone else while this operation ran" : "renewing the lock failed: \(r.tail(2))",
                                  hint: "`sous status -i INVENTORY` shows who holds it now", exitCode: .checkFailed)
            }
            mutex.withLock { lease = next }
        }

        func release() async { _ = try? await head.run(ClusterLock.release(current)) }
    }

    /// Takes the lock (or a stale one over, with a warning), runs `body`, and releases it whether `body` succeeds
    /// or throws. `ttl` is how long the lease first lasts; `body` renews it before long steps.
    public static func with<T: Sendable>(_ head: NodeSession, what: String, ttl: Duration = .seconds(900), forceUnlock: Bool = false,
                                         warn: @Sendable (String) -> Void, _ body: (Holder) async throws -> T) async throws -> T {
        let holder = try await acquire(head, what: what, ttl: ttl, forceUnlock: forceUnlock, warn: warn)
        do {
            let value = try await body(holder)
            await holder.release()
            return value
        } catch {
            await holder.release()
            throw error
        }
    }

    static func acquire(_ head: NodeSession, what: String, ttl: Duration, forceUnlock: Bool, warn: @Sendable (String) -> Void) async throws -> Holder {
        let mkdir = try await head.run(EnvFileOps.makeStateDir(owner: head.node.user))
        if !mkdir.ok { throw StepFailure(step: "lock", node: head.node.name, cause: "cannot create \(NodePaths.stateDir): \(mkdir.tail(2))", hint: nil, exitCode: .checkFailed) }
        if forceUnlock {
            let had = try await head.run(RemoteCommand(["cat", "--", path], timeout: .seconds(30)))
            if had.ok { warn("--force-unlock: removed the lock of " + ((try? JSONDecoder().decode(Lease.self, from: had.stdout))?.summary ?? "an unknown holder")) }
            _ = try await head.run(forceRemove())
        }
        let lease = Lease.mine(what: what, ttl: ttl)
        let r = try await head.run(create(lease))
        if r.ok { return Holder(head: head, lease: lease) }
        guard r.exitStatus == 10 else {
            throw StepFailure(step: "lock", node: head.node.name, cause: "cannot write the cluster lock \(path): \(r.tail(2))", hint: "free space in \(NodePaths.stateDir) on \(head.node.name)", exitCode: .checkFailed)
        }
        let existing = r.stdoutText
        guard let why = Lease.staleness(existing) else {
            let held = (try? JSONDecoder().decode(Lease.self, from: Data(existing.utf8)))?.summary ?? existing
            throw Held(holder: held)
        }
        let taken = try await head.run(replace(lease, expected: existing))
        guard taken.ok else { throw Held(holder: "another operation that took over the stale lock first") }
        warn("took over a stale cluster lock on \(head.node.name): \(why)")
        return Holder(head: head, lease: lease)
    }
}
