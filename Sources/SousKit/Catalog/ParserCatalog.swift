/// A vLLM release number: major.minor.patch, with any pre-release or local suffix ignored for ordering.
public struct VLLMVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int, minor: Int, patch: Int

    /// Parses `0.24.0`, `v0.24.0`, `0.20.1rc1.dev135+gabc`, `0.24`; nil for anything else.
    public init?(_ text: String) {
        var t = Substring(text)
        if t.hasPrefix("v") { t = t.dropFirst() }
        let numeric = t.prefix { $0.isNumber || $0 == "." }
        let parts = numeric.split(separator: ".", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }),
              let a = Int(parts[0]), let b = Int(parts[1]) else { return nil }
        let c = parts.count == 3 ? Int(parts[2]) : 0
        guard let c else { return nil }
        (major, minor, patch) = (a, b, c)
    }

    public init(_ major: Int, _ minor: Int, _ patch: Int) {
        (self.major, self.minor, self.patch) = (major, minor, patch)
    }

    public static func < (l: Self, r: Self) -> Bool { (l.major, l.minor, l.patch) < (r.major, r.minor, r.patch) }
    public var description: String { "\(major).\(minor).\(patch)" }

    /// The vLLM version inside NVIDIA's NGC vLLM containers (NVIDIA vLLM release notes).
    static let ngc: [String: VLLMVersion] = [
        "25.09": VLLMVersion(0, 10, 1), "25.10": VLLMVersion(0, 10, 2), "26.01": VLLMVersion(0, 11, 1),
        "26.03": VLLMVersion(0, 17, 1), "26.04": VLLMVersion(0, 19, 0), "26.05": VLLMVersion(0, 20, 1),
        "26.10": VLLMVersion(0, 31, 0),
    ]

    /// The vLLM version an image reference names, when its tag says it: `vllm/vllm-openai:v0.24.0[-suffix]`,
    /// `nvcr.io/nvidia/vllm:26.05-py3`. Digests and `latest` say nothing.
    public static func fromImage(_ image: String) -> VLLMVersion? {
        guard let tag = ImageRef.tag(of: image) else { return nil }
        if image.contains("nvcr.io/nvidia/") {
            let yymm = String(tag.prefix(5))
            return ngc[yymm]
        }
        guard tag.first == "v" || tag.first?.isNumber == true else { return nil }
        return VLLMVersion(String(tag.split(separator: "-").first ?? ""))
    }
}

/// Helpers for container image references.
public enum ImageRef {
    /// The tag of `repo[:port]/name:tag[@digest]`, nil when there is none.
    public static func tag(of image: String) -> String? {
        let noDigest = image.split(separator: "@", maxSplits: 1).first.map(String.init) ?? image
        let lastSlash = noDigest.lastIndex(of: "/").map { noDigest.index(after: $0) } ?? noDigest.startIndex
        let name = noDigest[lastSlash...]
        guard let colon = name.lastIndex(of: ":") else { return nil }
        return String(name[name.index(after: colon)...])
    }

    /// True when the reference pins an exact image: a digest, or a tag other than a moving one.
    public static func isPinned(_ image: String) -> Bool {
        if image.contains("@sha256:") { return true }
        guard let tag = tag(of: image) else { return false }
        return !["latest", "nightly", "main"].contains(tag) && !tag.hasPrefix("latest-")
    }
}

/// Which parser names each released vLLM version registers, and which are aliases of one another.
public struct ParserCatalog: Sendable {
    public struct Release: Sendable {
        public var version: VLLMVersion
        /// Registered name → implementing class; names that share a class are aliases.
        public var toolCallParsers: [String: String]
        public var reasoningParsers: [String: String]
        /// Whether responses carry `system_fingerprint` (vLLM ≥ 0.21).
        public var systemFingerprint: Bool
    }

    public enum Kind: String, Sendable {
        case toolCall = "tool-call"
        case reasoning = "reasoning"
    }

    /// What the catalog can say about one parser name on one vLLM version.
    public enum Verdict: Sendable, Equatable {
        /// Registered in that version (the class it maps to).
        case registered(className: String)
        /// Not registered in the nearest release at or below the version, but in a later one: cannot confirm.
        case unconfirmed(checkedRelease: VLLMVersion, firstSeen: VLLMVersion)
        /// Not registered in any listed release up to that version.
        case unknown(suggestion: String?)
    }

    public let releases: [Release]

    public init(releases: [Release]) { self.releases = releases.sorted { $0.version < $1.version } }

    /// The newest listed release at or below `version` (the oldest one when `version` predates them all).
    public func release(atOrBelow version: VLLMVersion) -> Release {
        releases.last { $0.version <= version } ?? releases[0]
    }

    func table(_ release: Release, _ kind: Kind) -> [String: String] {
        kind == .toolCall ? release.toolCallParsers : release.reasoningParsers
    }

    /// Checks a parser name against the release an image runs; with no version, against the newest release.
    public func check(_ name: String, kind: Kind, version: VLLMVersion?) -> Verdict {
        let release = version.map { self.release(atOrBelow: $0) } ?? releases[releases.count - 1]
        if let cls = table(release, kind)[name] { return .registered(className: cls) }
        if let later = releases.first(where: { $0.version > release.version && table($0, kind)[name] != nil }) {
            if version.map({ $0 > release.version }) ?? false {
                return .unconfirmed(checkedRelease: release.version, firstSeen: later.version)
            }
        }
        return .unknown(suggestion: didYouMean(name, in: table(release, kind).keys.sorted()))
    }

    /// A name the release does not register, as an earlier release had it: the names the release gives the same
    /// class (renamed), or the last release that had it (removed); nil when no earlier release had it.
    public func fate(of name: String, kind: Kind, version: VLLMVersion?) -> String? {
        let release = version.map { self.release(atOrBelow: $0) } ?? releases[releases.count - 1]
        guard table(release, kind)[name] == nil, let last = releases.last(where: { $0.version < release.version && table($0, kind)[name] != nil }),
              let cls = table(last, kind)[name] else { return nil }
        let now = table(release, kind).filter { $0.value == cls }.keys.sorted()
        return now.isEmpty ? "vLLM \(last.version) was the last release sous knows with `\(name)` (\(cls)); \(release.version) has no such parser"
            : "`\(name)` (\(cls)) is registered as \(now.map { "`\($0)`" }.joined(separator: ", ")) in vLLM \(release.version)"
    }

    /// The first listed release that registers the name.
    public func firstRelease(with name: String, kind: Kind) -> VLLMVersion? {
        releases.first { table($0, kind)[name] != nil }?.version
    }

    /// Whether two parser names are the same parser on a version (aliases of one class).
    public func sameParser(_ a: String, _ b: String, kind: Kind, version: VLLMVersion) -> Bool {
        let t = table(release(atOrBelow: version), kind)
        guard let ca = t[a], let cb = t[b] else { return a == b }
        return ca == cb
    }

    /// Whether that version's responses carry `system_fingerprint`.
    public func hasSystemFingerprint(_ version: VLLMVersion) -> Bool {
        version >= VLLMVersion(0, 21, 0)
    }
}
