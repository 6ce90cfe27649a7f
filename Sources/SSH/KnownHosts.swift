import Foundation

/// An OpenSSH known_hosts file, read as sshd(8) describes it (SSH_KNOWN_HOSTS FILE FORMAT): per line an optional
/// marker (`@revoked`, `@cert-authority`), the host names (comma-separated patterns with `*` and `?`, `!` to
/// exclude, `[host]:port` for another port; or one hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`),
/// the key type and the base64 key. sous reads it itself: libssh2's reader knows no markers and no patterns,
/// and gives up on the whole file at the first line it cannot parse.
struct KnownHosts {
    struct Entry: Equatable {
        /// 1-based, as editors count.
        var line: Int
        var marker: String?
        var hosts: String
        var keyType: String
        /// The key blob; nil when the base64 does not decode (such a line still records a key for its hosts).
        var key: Data?
    }

    let path: String
    let entries: [Entry]
    /// Empty, or ending in a newline: a line appended starts on its own line.
    let endsWithNewline: Bool

    /// A missing file is an empty one.
    init(path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            self.init(text: "", path: path)
            return
        }
        // A FileHandle reads /dev/null too (a common known_hosts for "trust nothing"); Data(contentsOf:) does not.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let data = try handle.readToEnd() ?? Data()
        self.init(text: String(decoding: data, as: UTF8.self), path: path)
    }

    init(text: String, path: String) {
        self.path = path
        endsWithNewline = text.isEmpty || text.hasSuffix("\n")
        var entries: [Entry] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var fields = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let first = fields.first, !first.hasPrefix("#") else { continue }
            let marker = first.hasPrefix("@") ? fields.removeFirst() : nil
            // Lines without a key record nothing (OpenSSH skips them too).
            guard fields.count >= 3 else { continue }
            entries.append(Entry(line: i + 1, marker: marker, hosts: fields[0], keyType: fields[1], key: Data(base64Encoded: fields[2])))
        }
        self.entries = entries
    }

    /// The lines whose host names match `name` (`host`, or `[host]:port` off port 22), whatever their key type or marker.
    func entries(for name: String) -> [Entry] {
        let name = name.lowercased()
        return entries.filter { Self.matches($0.hosts, name) }
    }

    /// OpenSSH's match_hostname: a hashed name, or a pattern list where any match counts unless a `!` pattern matches.
    static func matches(_ hosts: String, _ name: String) -> Bool {
        if hosts.hasPrefix("|1|") {
            let parts = hosts.split(separator: "|", omittingEmptySubsequences: false)
            guard parts.count == 4, let salt = Data(base64Encoded: String(parts[2])), let hash = Data(base64Encoded: String(parts[3])) else { return false }
            return SHA1.hmac(key: [UInt8](salt), Array(name.utf8)) == [UInt8](hash)
        }
        var matched = false
        for pattern in hosts.lowercased().split(separator: ",") {
            let negated = pattern.hasPrefix("!")
            guard glob(Array(pattern.utf8.dropFirst(negated ? 1 : 0)), Array(name.utf8)) else { continue }
            if negated { return false }
            matched = true
        }
        return matched
    }

    /// `*` is any run of characters, `?` any one; everything else stands for itself.
    private static func glob(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        var pi = 0, si = 0
        var star: Int?, resume = 0
        while si < s.count {
            if pi < p.count, p[pi] == UInt8(ascii: "*") {
                star = pi
                resume = si
                pi += 1
            } else if pi < p.count, p[pi] == UInt8(ascii: "?") || p[pi] == s[si] {
                pi += 1
                si += 1
            } else if let star {
                pi = star + 1
                resume += 1
                si = resume
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}

/// SHA-1 and HMAC-SHA1 (RFC 3174, RFC 2104), for hashed known_hosts names only.
enum SHA1 {
    static func hash(_ message: [UInt8]) -> [UInt8] {
        var h: [UInt32] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
        var m = message
        let bits = UInt64(m.count) * 8
        m.append(0x80)
        while m.count % 64 != 56 { m.append(0) }
        for i in (0..<8).reversed() { m.append(UInt8(truncatingIfNeeded: bits >> (UInt64(i) * 8))) }
        func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: m.count, by: 64) {
            for i in 0..<16 { w[i] = (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(m[chunk + i * 4 + $1]) } }
            for i in 16..<80 { w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1) }
            var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
            for i in 0..<80 {
                let (f, k): (UInt32, UInt32) = switch i {
                case 0..<20: ((b & c) | (~b & d), 0x5A827999)
                case 20..<40: (b ^ c ^ d, 0x6ED9EBA1)
                case 40..<60: ((b & c) | (b & d) | (c & d), 0x8F1BBCDC)
                default: (b ^ c ^ d, 0xCA62C1D6)
                }
                (e, d, c, b, a) = (d, c, rotl(b, 30), a, rotl(a, 5) &+ f &+ e &+ k &+ w[i])
            }
            h = [h[0] &+ a, h[1] &+ b, h[2] &+ c, h[3] &+ d, h[4] &+ e]
        }
        return h.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) } }
    }

    static func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var k = key.count > 64 ? hash(key) : key
        k += [UInt8](repeating: 0, count: 64 - k.count)
        return hash(k.map { $0 ^ 0x5c } + hash(k.map { $0 ^ 0x36 } + message))
    }
}
