import ArgumentParser
import Foundation
import SousKit
import SSH

struct RollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roll",
        abstract: "Bump the vLLM image with automatic rollback.",
        discussion: """
        Takes the cluster lock on the head, pre-pulls the new image on every node while the old engine keeps \
        serving (one image ID everywhere), then switches and gates exactly as `up` does (fingerprint tp<N>, a \
        real completion, the four agent checks). On any failure it starts the previous image again (it is still on \
        the nodes) and gates that too. Prints the fingerprint diff, the serving gap and the outcome; both the attempt \
        and any rollback go to the journal (`sous history`). Exit 0 verified, 1 rolled back or failed.

        Several groups behind the router roll one at a time: the group leaves the router, its requests in flight \
        finish, it rolls and is gated as above, and it goes back in; the others serve meanwhile. The first group \
        that does not verify is rolled back and put back, and the roll stops: the groups after it keep their image.
        """
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Option(help: "The new image (a pinned tag or digest).")
    var image: String

    @Option(help: "How long each engine may take to become healthy (90s, 30m, 1h).")
    var timeout = DurationArg("30m")

    @Option(help: "How long each verification request may take (120s, 2m).")
    var checkTimeout = DurationArg("120s")

    @Flag(help: "Clear a stale cluster lock first.")
    var forceUnlock = false

    @Flag(help: "Print the result as JSON (progress goes to stderr).")
    var json = false

    func run() async throws {
        Signals.stopAtSafePoints()
        let d = try deployment.load(allowGroups: true)
        try await Self.roll(d, to: image, ssh: ssh, timeout: timeout.duration, checkTimeout: checkTimeout.duration, forceUnlock: forceUnlock, json: json)
    }

    static func roll(_ d: Deployment, to image: String, ssh: SSHOptions, timeout: Duration, checkTimeout: Duration, forceUnlock: Bool, json: Bool) async throws {
        guard ImageRef.isPinned(image) else { throw UsageError("`\(image)` is not pinned", hint: "use an exact tag or a digest") }
        if d.isMultiGroup {
            var up = UpRunner(deployment: d, transport: ssh.transport(for: d.inventory), probe: URLSessionProbe(), key: try apiKey(d.inventory),
                              reporter: LineReporter(toStderr: json), engineTimeout: timeout, checkTimeout: checkTimeout)
            up.forceUnlock = forceUnlock
            let r = try await GroupsRunner(up).runRoll(to: image)
            if json { print(encodeJSON(r), terminator: "") } else {
                for g in r.groups {
                    print("\(g.group ?? ""): \(g.outcome.rawValue) (\(g.from) → \(g.to)), fingerprint \(g.fingerprint_old ?? "none") → \(g.fingerprint_new ?? "none"), serving gap " + (g.serving_gap_s.map { String(format: "%.2f s", $0) } ?? "unknown") + " (out of the router)")
                }
                let untouched = d.groups.dropFirst(r.groups.count).map(\.name)
                if !untouched.isEmpty { print("untouched: \(untouched.joined(separator: ", ")) (still on the image they ran)") }
                print("outcome: \(r.outcome.rawValue) (\(r.groups.count) of \(d.groups.count) groups rolled, one at a time, the endpoint served by the others)")
                if let cause = r.cause { print("cause: \(cause)") }
            }
            if Interruption.shared.requested != nil { throw ExitCode(ExitStatus.interrupted.rawValue) }
            if r.outcome != .verified { throw ExitCode(ExitStatus.checkFailed.rawValue) }
            return
        }
        let runner = RollRunner(recipe: d.recipe, inventory: d.inventory, newImage: image, transport: ssh.transport(for: d.inventory),
                                probe: URLSessionProbe(), key: try apiKey(d.inventory), reporter: LineReporter(toStderr: json),
                                engineTimeout: timeout, checkTimeout: checkTimeout, forceUnlock: forceUnlock)
        let r = try await runner.run()
        if json {
            print(encodeJSON(r), terminator: "")
        } else {
            print("fingerprint: \(r.fingerprint_old ?? "none") → \(r.fingerprint_new ?? "none")")
            print("serving gap: " + (r.serving_gap_s.map { String(format: "%.2f s", $0) } ?? "unknown"))
            print("outcome: \(r.outcome.rawValue) (\(r.from) → \(r.to))")
            if let cause = r.cause { print("cause: \(cause)") }
        }
        if Interruption.shared.requested != nil { throw ExitCode(ExitStatus.interrupted.rawValue) }
        if r.outcome != .verified { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}

/// Journal entries from the head; lines sous cannot read are skipped with a warning.
func readJournal(_ inv: Inventory, ssh: SSHOptions) async throws -> [JournalEntry] {
    let text = try await withSessions([inv.head], transport: ssh.transport(for: inv), reporter: SilentReporter()) { s in
        try await s[inv.head.name]!.run(JournalOps.read()).stdoutText
    }
    let (entries, warnings) = JournalOps.parse(text)
    for w in warnings { Console.warning(w) }
    return entries
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "What was deployed and rolled, from the journal on the head.")

    @Option(name: [.customShort("i"), .long], help: "Inventory file.")
    var inventory: String

    @OptionGroup var ssh: SSHOptions

    @Flag(help: "Print the entries as JSON, oldest first, each with its number `n` (what `sous rollback --to N` takes).")
    var json = false

    func run() async throws {
        let (inv, _) = try InventoryReader.load(path: inventory)
        let entries = try await readJournal(inv, ssh: ssh)
        if json {
            struct Numbered: Encodable {
                var n: Int
                var entry: JournalEntry
                func encode(to encoder: Encoder) throws {
                    try entry.encode(to: encoder)
                    var c = encoder.container(keyedBy: K.self)
                    try c.encode(n, forKey: .n)
                }
                enum K: String, CodingKey { case n }
            }
            print(encodeJSON(entries.enumerated().map { Numbered(n: $0.offset + 1, entry: $0.element) }), terminator: "")
            return
        }
        var rows = [["#", "WHEN", "EVENT", "IMAGE", "OUTCOME", "FINGERPRINT"]]
        for (i, e) in entries.enumerated() {
            let image = e.event == .roll ? "\(e.from ?? "?") → \(e.to ?? "?")" : e.image ?? "-"
            let outcome = e.event == .roll ? e.outcome?.rawValue ?? "?" : e.event == .up ? "verified" : "-"
            let fp = (e.event == .roll ? e.fingerprint_new : e.fingerprint) ?? "-"
            rows.append(["\(i + 1)", e.finished_at ?? "?", e.event.rawValue, image, outcome, fp])
        }
        print(formatTable(rows), terminator: "")
    }
}

struct RollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Roll back to the image of an earlier verified journal entry (default: the one before the current image).",
        discussion: "`sous history` numbers the entries; --to N rolls to entry N's image. Gated and journaled like `sous roll`."
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Option(help: "Journal entry number (from `sous history`).")
    var to: Int?

    @Option(help: "How long each engine may take to become healthy (90s, 30m, 1h).")
    var timeout = DurationArg("30m")

    @Flag(help: "Remove a stale cluster lock first (its holder is named).")
    var forceUnlock = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        Signals.stopAtSafePoints()
        let d = try deployment.load()
        let entries = try await readJournal(d.inventory, ssh: ssh)
        let target: String
        if let to {
            guard (1...max(1, entries.count)).contains(to), to <= entries.count, let image = entries[to - 1].verifiedImage else {
                throw UsageError("journal entry \(to) has no verified image", hint: "sous history -i \(d.inventory.file)")
            }
            target = image
        } else {
            let images = entries.compactMap(\.verifiedImage)
            guard let current = images.last, let previous = images.last(where: { $0 != current }) else {
                throw UsageError("the journal has no earlier image to roll back to", hint: "sous history -i \(d.inventory.file)")
            }
            target = previous
        }
        try await RollCommand.roll(d, to: target, ssh: ssh, timeout: timeout.duration, checkTimeout: .seconds(120), forceUnlock: forceUnlock, json: json)
    }
}
