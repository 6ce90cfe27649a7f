import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// A hostile (or honest) HTTP/1.1 server on loopback, 127.0.0.1 or ::1, on its own threads: every request is
/// recorded and answered by `reply`. For the HTTP probe's tests.
public final class LoopbackHTTPServer: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        /// Header names lowercased; a repeated header's values joined with ", ".
        public var headers: [String: String]
        public var body: Data
    }

    public enum Reply: Sendable {
        /// A complete answer with its Content-Length.
        case answer(status: Int, body: Data)
        /// The same, chunked (Transfer-Encoding: chunked) in pieces of `chunk` bytes.
        case chunked(status: Int, body: Data, chunk: Int, contentType: String = "application/json")
        /// A 200 declaring `bytes` bytes, then one byte per `every`: never idle, never done in time.
        case trickle(every: Duration, bytes: Int)
        /// A 200 with no length, `bytes` bytes as fast as they go, then the close.
        case flood(bytes: Int)
        /// A 200 declaring a Content-Length of `length` bytes, then nothing.
        case declare(length: Int)
        /// A redirect to `location`.
        case redirect(status: Int, location: String)
        /// These bytes as they are, one at a time `pace` apart (an answer split at every byte), then the close.
        case raw(Data, pace: Duration)
        /// The request is read and never answered.
        case silence
    }

    public let host: String
    public private(set) var port = 0
    private let listener: Int32
    private let reply: @Sendable (Request) -> Reply
    private let lock = NSLock()
    private var stopped = false
    private var received: [Request] = []

    /// Every request so far.
    public var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return received
    }

    /// `http://127.0.0.1:PORT` or `http://[::1]:PORT`.
    public var baseURL: String { Endpoint.baseURL(host: host, port: port) }

    public init(host: String = "127.0.0.1", reply: @escaping @Sendable (Request) -> Reply) throws {
        self.host = host
        self.reply = reply
        let v6 = host.contains(":")
        listener = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var rc: Int32
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            inet_pton(AF_INET6, host, &a.sin6_addr)
            rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            inet_pton(AF_INET, host, &a.sin_addr)
            rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard rc == 0, listen(listener, 64) == 0 else {
            close(listener)
            throw HarnessError("bind/listen on \(host): \(String(cString: strerror(errno)))")
        }
        var bound = sockaddr_in6()
        var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        // sin_port and sin6_port sit at the same offset.
        port = Int(UInt16(bigEndian: bound.sin6_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops accepting and ends the connections still answering (at their next byte or tick).
    public func stop() {
        lock.lock()
        let first = !stopped
        stopped = true
        lock.unlock()
        if first { shutdown(listener, Int32(SHUT_RDWR)) }
    }

    deinit {
        stop()
        close(listener)
    }

    var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    private func acceptLoop() {
        while !isStopped {
            let fd = accept(listener, nil, nil)
            if fd < 0 { if isStopped { return } else { continue } }
            Thread.detachNewThread { [self] in serve(fd) }
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        guard let request = read(fd) else { return }
        lock.lock()
        received.append(request)
        lock.unlock()
        switch reply(request) {
        case .answer(let status, let body):
            _ = write(fd, head(status, ["Content-Length: \(body.count)"]) + body)
        case .chunked(let status, let body, let chunk, let contentType):
            var out = head(status, ["Transfer-Encoding: chunked"], contentType: contentType)
            var i = 0
            while i < body.count {
                let piece = body[i..<min(i + chunk, body.count)]
                out += Data("\(String(piece.count, radix: 16))\r\n".utf8) + piece + Data("\r\n".utf8)
                i += chunk
            }
            _ = write(fd, out + Data("0\r\n\r\n".utf8))
        case .trickle(let every, let bytes):
            guard write(fd, head(200, ["Content-Length: \(bytes)"])) else { return }
            for _ in 0..<bytes {
                Thread.sleep(forTimeInterval: every / .seconds(1))
                if isStopped || !write(fd, Data("x".utf8)) { return }
            }
        case .flood(let bytes):
            guard write(fd, head(200, [])) else { return }
            let block = Data(repeating: UInt8(ascii: "x"), count: 1 << 16)
            var sent = 0
            while sent < bytes, !isStopped, write(fd, block.prefix(bytes - sent)) { sent += min(block.count, bytes - sent) }
        case .declare(let length):
            guard write(fd, head(200, ["Content-Length: \(length)"])) else { return }
            while !isStopped { Thread.sleep(forTimeInterval: 0.05) }
        case .redirect(let status, let location):
            _ = write(fd, head(status, ["Location: \(location)", "Content-Length: 0"]))
        case .raw(let bytes, let pace):
            for b in bytes {
                if isStopped || !write(fd, Data([b])) { return }
                Thread.sleep(forTimeInterval: pace / .seconds(1))
            }
        case .silence:
            while !isStopped { Thread.sleep(forTimeInterval: 0.05) }
        }
    }

    private func head(_ status: Int, _ extra: [String], contentType: String = "application/json") -> Data {
        Data(((["HTTP/1.1 \(status) Whatever", "Content-Type: \(contentType)", "Connection: close"] + extra).map { $0 + "\r\n" }.joined() + "\r\n").utf8)
    }

    private func write(_ fd: Int32, _ data: Data) -> Bool {
        var off = 0
        while off < data.count {
            let n = data.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    private func read(_ fd: Int32) -> Request? {
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        var end: Range<Data.Index>?
        while end == nil {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return nil }
            data.append(buf, count: n)
            end = data.range(of: Data("\r\n\r\n".utf8))
        }
        var lines = String(decoding: data[..<end!.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let first = lines.removeFirst().split(separator: " ")
        guard first.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for l in lines {
            guard let c = l.firstIndex(of: ":") else { continue }
            let name = l[..<c].lowercased(), value = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { "\($0), \(value)" } ?? value
        }
        var body = Data(data[end!.upperBound...])
        let length = Int(headers["content-length"] ?? "0") ?? 0
        while body.count < length {
            let n = recv(fd, &buf, min(buf.count, length - body.count), 0)
            if n <= 0 { return nil }
            body.append(buf, count: n)
        }
        return Request(method: String(first[0]), path: String(first[1]), headers: headers, body: body)
    }
}
