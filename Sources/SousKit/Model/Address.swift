import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The addresses an inventory names, parsed rather than pattern-matched: an IP literal by inet_pton, a host name
/// by RFC 1123. Nothing else reaches ssh, a URL, `--master-addr` or VLLM_HOST_IP.
enum Address {
    /// An IPv4 or IPv6 literal as its 4 or 16 bytes (equal bytes: the same address however it is spelled); nil
    /// for anything else, brackets and IPv6 zone ids (`fe80::1%eth0`) included: the URLs, known_hosts lines
    /// and rsync targets built from an address do not carry a zone.
    static func ipBytes(_ text: String) -> [UInt8]? {
        // inet_pton reads a C string: a NUL inside would hide what follows it.
        guard !text.utf8.contains(0), text.utf8.count <= 45 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// An RFC 1123 host name: dot-separated labels of 1–63 letters, digits and `-`, none starting or ending with
    /// `-` (so never an option to ssh), at most 253 characters, the last label not all digits (not an IPv4 typo).
    static func isHostName(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        let valid = labels.allSatisfy { label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        }
        return valid && !labels.last!.allSatisfy(\.isASCIIDigit)
    }

    /// What two hosts compare by: an address's bytes, a name case-insensitively.
    static func identity(_ host: String) -> String {
        ipBytes(host).map { $0.map(String.init).joined(separator: ".") } ?? host.lowercased()
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
