import Foundation

/// One line of the journal: what an operation did, as typed values (the same keys the journal has always had).
public struct JournalEntry: Codable, Sendable, Equatable {
    public enum Event: String, Codable, Sendable { case up, roll, watchTrigger = "watch-trigger" }

    public var event: Event
    public var finished_at: String?
    public var cluster: String?
    /// `up`: the image that was verified.
    public var image: String?
    public var fingerprint: String?
    /// `roll`: from → to, and how it ended.
    public var from: String?
    public var to: String?
    public var outcome: RollOutcome?
    public var fingerprint_new: String?
    /// The sous that wrote the entry.
    public var sous_version: String?

    /// The image this entry proves verified: an up's image, a verified roll's new image, a rolled-back roll's old one.
    public var verifiedImage: String? {
        switch event {
        case .up: return image
        case .roll:
            switch outcome {
            case .verified: return to
            case .rolledBack: return from
            case .rollbackFailed, nil: return nil
            }
        case .watchTrigger: return nil
        }
    }
}

/// How a roll ended.
public enum RollOutcome: String, Codable, Sendable {
    case verified
    case rolledBack = "rolled back"
    case rollbackFailed = "rollback failed"
}

/// The journal on the head (`/var/lib/sous/journal.jsonl`) and its local copy: one JSON object per line.
public enum JournalOps {
    public static let path = NodePaths.stateDir + "/journal.jsonl"
    /// The journal moves to `journal.jsonl.1` when it grows past this.
    public static let rotateBytes = 8 << 20
    /// Reading takes at most the last this many bytes (of the rotated file and the current one).
    public static let readBytes = 4 << 20

    /// Appends the line on stdin in one O_APPEND write, after repairing a missing final newline (a write cut
    /// short) and rotating a journal past `rotateBytes`.
    public static func append(_ line: String, at path: String = path) -> RemoteCommand {
        let script = """
        f=$1
        if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then printf '\\n' >> "$f"; fi
        if [ "$(stat -c %s "$f" 2>/dev/null || echo 0)" -gt "$2" ]; then mv -f "$f" "$f.1"; fi
        cat >> "$f"
        """
        return .shell(script, args: [path, String(rotateBytes)], stdin: Data(line.utf8), timeout: .seconds(30))
    }

    /// The last `readBytes` of the journal (the rotated part first).
    public static func read(at path: String = path) -> RemoteCommand {
        .shell("cat -- \"$1.1\" \"$1\" 2>/dev/null | tail -c \"$2\"; true", args: [path, String(readBytes)], timeout: .seconds(30))
    }

    /// One line for `event`: the value's fields and `"event"`, keys sorted.
    public static func line<T: Encodable>(event: JournalEntry.Event, _ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(TaggedEntry(event: event, value: value)), as: UTF8.self) + "\n"
    }

    /// The entries of `text` in order, and a warning per line that is not an entry. When the text is as long as
    /// the read limit, its first line may be cut and is skipped.
    public static func parse(_ text: String) -> (entries: [JournalEntry], warnings: [String]) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        if text.utf8.count >= readBytes, !lines.isEmpty { lines.removeFirst() }
        var entries: [JournalEntry] = [], warnings: [String] = []
        let decoder = JSONDecoder()
        for (i, l) in lines.enumerated() {
            if let e = try? decoder.decode(JournalEntry.self, from: Data(l.utf8)) {
                entries.append(e)
            } else {
                warnings.append("journal line \(i + 1) is not an entry sous can read (\(l.prefix(60))…); skipped")
            }
        }
        return (entries, warnings)
    }

    /// Appends `line` to the head's journal and the local one. A failed write is returned as a warning: the
    /// operation's outcome matters more than its record.
    public static func record(_ line: String, head: NodeSession) async -> String? {
        appendLocal(line)
        do {
            let r = try await head.run(append(line))
            return r.ok ? nil : "the journal on \(head.node.name) was not written: \(r.tail(2))"
        } catch {
            return "the journal on \(head.node.name) was not written: \((error as? SousFailure)?.message ?? "\(error)")"
        }
    }

    public static var localPath: String {
        let base = ProcessInfo.processInfo.environment["XDG_STATE_HOME"] ?? (NSHomeDirectory() + "/.local/state")
        return base + "/sous/journal.jsonl"
    }

    /// Appends one line to the local journal (best effort: the head's journal is the record), repairing a
    /// missing final newline first.
    public static func appendLocal(_ line: String) {
        let local = localPath
        try? FileManager.default.createDirectory(atPath: (local as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: local) { _ = FileManager.default.createFile(atPath: local, contents: nil, attributes: [.posixPermissions: 0o600]) }
        guard let fh = FileHandle(forUpdatingAtPath: local) else { return }
        defer { try? fh.close() }
        let end = fh.seekToEndOfFile()
        var data = Data(line.utf8)
        if end > 0 {
            fh.seek(toFileOffset: end - 1)
            if fh.readData(ofLength: 1) != Data("\n".utf8) { data.insert(UInt8(ascii: "\n"), at: 0) }
            fh.seekToEndOfFile()
        }
        fh.write(data)
    }
}

/// A value's fields plus `event` and `sous_version`, as one journal object.
struct TaggedEntry<T: Encodable>: Encodable {
    enum K: String, CodingKey { case event, sous_version }
    var event: JournalEntry.Event
    var value: T
    func encode(to encoder: Encoder) throws {
        try value.encode(to: encoder)
        var c = encoder.container(keyedBy: K.self)
        try c.encode(event, forKey: .event)
        try c.encode(SousVersion.current, forKey: .sous_version)
    }
}

/// What this sous is: its version, the git commit it was built from, and whether that tree had uncommitted
/// changes (from the BuildInfo plugin). `sous --version` prints it; every journal entry records it.
public enum SousVersion {
    public static let number = "0.5.0"
    public static let commit = buildCommit
    public static let dirty = buildDirty
    public static var current: String { "\(number) (\(commit)\(dirty ? ", dirty tree" : ""))" }
}
