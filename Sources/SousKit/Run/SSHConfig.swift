import Foundation

/// The few ~/.ssh/config keys sous honours (HostName, User, Port, IdentityFile), matched by Host patterns
/// the way OpenSSH does: the first value obtained for each key wins. Every other option that a matching
/// block sets is reported, never silently ignored.
public struct SSHConfig: Sendable {
    struct Block: Sendable {
        var patterns: [String]
        var options: [(key: String, value: String, line: Int)]
    }
    var blocks: [Block]
    public var file: String

    /// What the config says for one host alias.
    public struct Resolved: Sendable, Equatable {
        public var hostName: String?
        public var user: String?
        public var port: Int?
        public var identityFiles: [String] = []
        /// "file:line: Option value is not supported by sous (ignored)".
        public var unsupported: [String] = []
    }

    static let supported: Set<String> = ["hostname", "user", "port", "identityfile"]
    /// Options that change nothing sous does, so reporting them would only be noise.
    static let harmless: Set<String> = ["serveraliveinterval", "serveralivecountmax", "connecttimeout", "addkeystoagent",
                                        "identitiesonly", "forwardagent", "compression", "loglevel", "usekeychain",
                                        "hashknownhosts", "visualhostkey", "controlmaster", "controlpath", "controlpersist",
                                        "userknownhostsfile", "stricthostkeychecking", "preferredauthentications",
                                        "pubkeyauthentication", "passwordauthentication", "requesttty", "sendenv", "setenv"]

    public init(text: String, file: String) {
        self.file = file
        var blocks = [Block(patterns: ["*"], options: [])]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var key = "", value = ""
            if let sep = line.firstIndex(where: { $0 == " " || $0 == "\t" || $0 == "=" }) {
                key = String(line[..<sep])
                value = line[line.index(after: sep)...].trimmingCharacters(in: CharacterSet(charactersIn: " \t="))
            } else { key = line }
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            switch key.lowercased() {
            case "host": blocks.append(Block(patterns: value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init), options: []))
            case "match": blocks.append(Block(patterns: ["\u{0}match"], options: [("Match", value, n + 1)]))
            default: blocks[blocks.count - 1].options.append((key, value, n + 1))
            }
        }
        self.blocks = blocks
    }

    /// Loads ~/.ssh/config (or `path`); a missing file is an empty config.
    public static func load(path: String? = nil) -> SSHConfig {
        let p = path ?? (NSHomeDirectory() + "/.ssh/config")
        let text = (try? String(contentsOfFile: p, encoding: .utf8)) ?? ""
        return SSHConfig(text: text, file: p)
    }

    public func resolve(_ alias: String) -> Resolved {
        var r = Resolved()
        for block in blocks where block.patterns == ["\u{0}match"] {
            r.unsupported.append("\(file):\(block.options[0].line): Match blocks are not supported by sous (ignored)")
        }
        for block in blocks where Self.matches(alias, block.patterns) {
            for (key, value, line) in block.options {
                switch key.lowercased() {
                case "hostname": if r.hostName == nil { r.hostName = value.replacingOccurrences(of: "%h", with: alias) }
                case "user": if r.user == nil { r.user = value }
                case "port": if r.port == nil { r.port = Int(value) }
                case "identityfile": r.identityFiles.append(value)
                case let k where Self.harmless.contains(k): break
                default: r.unsupported.append("\(file):\(line): \(key) \(value) is not supported by sous (ignored)")
                }
            }
        }
        return r
    }

    static func matches(_ host: String, _ patterns: [String]) -> Bool {
        var matched = false
        for p in patterns {
            if p.hasPrefix("!") {
                if glob(String(p.dropFirst()), host) { return false }
            } else if glob(p, host) { matched = true }
        }
        return matched
    }

    /// OpenSSH's pattern match: `*` any run, `?` one character.
    static func glob(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.lowercased()), t = Array(text.lowercased())
        func m(_ i: Int, _ j: Int) -> Bool {
            if i == p.count { return j == t.count }
            if p[i] == "*" { return (j...t.count).contains { m(i + 1, $0) } }
            return j < t.count && (p[i] == "?" || p[i] == t[j]) && m(i + 1, j + 1)
        }
        return m(0, 0)
    }
}
