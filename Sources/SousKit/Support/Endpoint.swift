import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The URLs of a node's OpenAI-compatible server, built from an inventory's host and port.
public enum Endpoint {
    /// `http://HOST:PORT`, the host written as a URL needs it: an IPv6 literal in brackets (`::1` →
    /// `http://[::1]:8000`; a zone id, as ssh and ping take it, escaped: `fe80::1%eth0` → `[fe80::1%25eth0]`),
    /// an IPv4 address or a name as it is. A host already in brackets is taken without them.
    public static func baseURL(host: String, port: Int) -> String {
        url(host: host, port: port, path: "")
    }

    /// `baseURL(host:port:)` followed by `path` (e.g. `/v1/models`), percent-escaped where a URL needs it.
    public static func url(host: String, port: Int, path: String) -> String {
        var c = URLComponents()
        c.scheme = "http"
        c.host = urlHost(host)
        c.port = port
        c.path = path
        // Only a host no URL can hold (a `/` or a space in it) has no string; keep it escaped, so the request
        // fails naming it instead of reaching somewhere else.
        return c.string ?? "http://\(c.percentEncodedHost ?? "")\(c.port.map { ":\($0)" } ?? "")\(c.percentEncodedPath)"
    }

    /// An IPv6 literal in brackets with its zone id escaped; anything else unchanged.
    static func urlHost(_ host: String) -> String {
        var h = Substring(host)
        if h.hasPrefix("["), h.hasSuffix("]") { h = h.dropFirst().dropLast() }
        let address = h.prefix { $0 != "%" }
        let zone = h.dropFirst(address.count + 1)
        var scratch = in6_addr()
        guard inet_pton(AF_INET6, String(address), &scratch) == 1 else { return host }
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        let escapedZone = zone.isEmpty ? "" : "%25" + (String(zone).addingPercentEncoding(withAllowedCharacters: unreserved) ?? "")
        return "[\(address)\(escapedZone)]"
    }
}

extension Inventory {
    /// The head's API base URL (an IPv6 head in brackets).
    public var baseURL: String { Endpoint.baseURL(host: head.host, port: port) }
}
