import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Runs the agent checks against an endpoint, in the seed's order.
public struct Validator: Sendable {
    public var probe: HTTPProbe
    public var baseURL: String
    public var model: String
    public var key: Secret?
    public var sampling: [(String, Double)]
    /// When set, the completion's system_fingerprint must show tp<N>.
    public var tensorParallel: Int?
    public var timeout: Duration
    /// The `tool_choice` modes the model handles (the recipe's `tool_choice`); `auto` is always checked, the others
    /// each add a forced-call check.
    public var toolChoices: [ToolChoiceMode]
    /// Also stream the tool call and the round trip, as coding agents do.
    public var stream: Bool

    public init(probe: HTTPProbe, baseURL: String, model: String, key: Secret?, sampling: [(String, Double)] = [],
                tensorParallel: Int? = nil, timeout: Duration = .seconds(120), toolChoices: [ToolChoiceMode] = [.auto], stream: Bool = true) {
        self.probe = probe
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.model = model
        self.key = key
        self.sampling = sampling
        self.tensorParallel = tensorParallel
        self.timeout = timeout
        self.toolChoices = toolChoices
        self.stream = stream
    }

    var v1: String { baseURL.hasSuffix("/v1") ? baseURL : baseURL + "/v1" }

    /// Every check's verdict; a transport failure (refused, timed out) becomes a failed check, not a throw.
    public func run() async -> [CheckResult] {
        var results: [CheckResult] = []
        func failed(_ name: String, _ error: Error) -> CheckResult {
            let diagnosis: String
            switch (error as? URLSessionProbe.Failure)?.kind {
            case .redirected?:
                diagnosis = "a redirect (a proxy's http→https or trailing-slash rule, or something else answering) would send the API key elsewhere: point the URL at the server that answers, or test the node directly on its port"
            case .tooLarge?:
                diagnosis = "a vLLM JSON answer is a few KiB: something else is answering on this address (test the node directly on its port)"
            case .badAnswer?:
                diagnosis = "the server does not speak HTTP/1.x as vLLM does: check the address and port (is it a TLS port? use https://)"
            case .unreachable?:
                diagnosis = "nothing answers there: is the engine up (GET /health) and are the host and port right?"
            case .badRequest?:
                diagnosis = "fix the URL or the API key's value"
            default:
                diagnosis = "the endpoint did not answer in \(timeout): is the engine up (GET /health)? a wedged engine keeps /health green but never answers completions"
            }
            return CheckResult(name: name, passed: false, detail: "\(error)", diagnosis: diagnosis)
        }
        do {
            results.append(AgentChecks.modelList(try await probe.get(v1 + "/models", bearer: key, timeout: timeout), model: model))
            if key != nil { results.append(AgentChecks.authEnforced(try await probe.get(v1 + "/models", bearer: nil, timeout: timeout))) }
        } catch { results.append(failed("model list", error)); return results }
        let call: HTTPResponse
        do {
            call = try await probe.post(v1 + "/chat/completions", json: AgentChecks.toolCallRequest(model: model, sampling: sampling), bearer: key, timeout: timeout)
        } catch { results.append(failed("tool call", error)); return results }
        if let n = tensorParallel { results.append(AgentChecks.fingerprint(call, tensorParallel: n)) }
        results.append(AgentChecks.toolCall(call))
        results.append(AgentChecks.jsonArguments(call))
        guard let id = AgentChecks.toolCallID(call) else {
            results.append(CheckResult(name: "tool-result round trip", passed: false, detail: "skipped: no tool call id", diagnosis: "fix the tool call first"))
            return results
        }
        do {
            let r = try await probe.post(v1 + "/chat/completions", json: AgentChecks.roundTripRequest(model: model, sampling: sampling, toolCallID: id), bearer: key, timeout: timeout)
            results.append(AgentChecks.roundTrip(r))
        } catch { results.append(failed("tool-result round trip", error)) }
        if stream {
            do {
                let body = AgentChecks.streamed(AgentChecks.toolCallRequest(model: model, sampling: sampling), stream: true)
                let r = try await probe.post(v1 + "/chat/completions", json: body, bearer: key, timeout: timeout)
                let check = AgentChecks.streamedToolCall(r)
                results.append(check)
                if check.passed, let streamedID = StreamedChat.parse(r.body).orderedCalls.first?.id {
                    let body = AgentChecks.streamed(AgentChecks.roundTripRequest(model: model, sampling: sampling, toolCallID: streamedID), stream: true)
                    results.append(AgentChecks.streamedRoundTrip(try await probe.post(v1 + "/chat/completions", json: body, bearer: key, timeout: timeout)))
                }
            } catch { results.append(failed("streamed tool call", error)) }
        }
        for mode in toolChoices where mode != .auto {
            do {
                let body = AgentChecks.forcedToolCallRequest(model: model, sampling: sampling, mode: mode)
                results.append(AgentChecks.forcedToolCall(try await probe.post(v1 + "/chat/completions", json: body, bearer: key, timeout: timeout), mode: mode))
            } catch { results.append(failed("\(mode.rawValue) tool call", error)) }
        }
        return results
    }
}

/// The live HTTP probe. Answers are untrusted, so every request is bounded: a hard deadline for the whole
/// exchange (connect, send, every byte of the answer), a cap on the body, and redirects are never followed
/// (they would carry the API key to wherever they point). The key goes only into the Authorization header.
///
/// Plain `http` (the nodes, by name, IPv4 or IPv6 address) goes over a small HTTP/1.1 client on a socket:
/// FoundationNetworking on Linux refuses IPv6 literal URLs (NSURLErrorBadURL) and cannot stream a body.
/// `https` (a reverse proxy in front) goes over URLSession with the same deadline, cap and redirect rule.
/// The name is kept for its callers.
public struct URLSessionProbe: HTTPProbe {
    /// The default cap on an answer's body: a model list or a completion is a few KiB.
    public static let defaultMaxBodyBytes = 1 << 20
    /// Bodies longer than this are an error, not read further.
    public var maxBodyBytes: Int

    enum Transport: Sendable { case automatic, urlSession }
    /// Tests run the URLSession path against plain http too.
    var transport = Transport.automatic

    public init(maxBodyBytes: Int = URLSessionProbe.defaultMaxBodyBytes) {
        self.maxBodyBytes = maxBodyBytes
    }

    public struct Failure: Error, CustomStringConvertible {
        public enum Kind: Sendable, Equatable { case timedOut, tooLarge, redirected, unreachable, badAnswer, badRequest }
        public var kind: Kind
        public var description: String
    }

    public func get(_ url: String, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse {
        try await send("GET", url, body: nil, bearer: bearer, timeout: timeout)
    }

    public func post(_ url: String, json: Data, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse {
        try await send("POST", url, body: json, bearer: bearer, timeout: timeout)
    }

    func send(_ method: String, _ url: String, body: Data?, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse {
        try Task.checkCancellation()
        let what = "\(method) \(url)"
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = c.percentEncodedHost, !host.isEmpty, let u = c.url else {
            let hint = url.contains("::") ? " (an IPv6 address goes in brackets: http://[::1]:8000)" : ""
            throw Failure(kind: .badRequest, description: "not an http:// or https:// URL: \(url)\(hint)")
        }
        var headers = [("Accept", "application/json")]
        if body != nil { headers.append(("Content-Type", "application/json")) }
        if let bearer {
            let value = bearer.reveal()
            guard !value.isEmpty, !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw Failure(kind: .badRequest, description: "\(what): the API key is empty or holds a control character (a line break?); sous does not send it")
            }
            headers.append(("Authorization", "Bearer \(value)"))
        }
        let seconds = max(0, timeout / .seconds(1))
        let exchange: any Exchange
        if scheme == "http" && transport == .automatic {
            let target = (c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath) + (c.percentEncodedQuery.map { "?" + $0 } ?? "")
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host)\(c.port.map { ":\($0)" } ?? "")\r\n"
            for (k, v) in headers { head += "\(k): \(v)\r\n" }
            head += "Content-Length: \(body?.count ?? 0)\r\nConnection: close\r\n\r\n"
            exchange = SocketExchange(host: bare.removingPercentEncoding ?? bare, port: c.port ?? 80, request: Data(head.utf8) + (body ?? Data()),
                                      requestURL: u, maxBody: maxBodyBytes, deadline: .now + timeout)
        } else {
            var r = URLRequest(url: u)
            r.httpMethod = method
            r.httpBody = body
            r.timeoutInterval = seconds
            for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
            exchange = SessionExchange(request: r, maxBody: maxBodyBytes)
        }
        let done = Completion()
        let words = Wording(what: what, seconds: seconds, maxBody: maxBodyBytes)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                done.install(continuation)
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled, done.finish(.failure(words.failure(.timedOut))) { exchange.cancel() }
                }
                exchange.start { result in
                    timer.cancel()
                    done.finish(result.mapError(words.failure))
                }
            }
        } onCancel: {
            if done.finish(.failure(CancellationError())) { exchange.cancel() }
        }
    }

    /// How a problem reads, naming the request and never the key.
    struct Wording: Sendable {
        var what: String, seconds: Double, maxBody: Int

        func failure(_ problem: ExchangeProblem) -> any Error {
            func fail(_ kind: Failure.Kind, _ text: String) -> Failure { Failure(kind: kind, description: "\(what): \(text)") }
            switch problem {
            case .timedOut: return fail(.timedOut, "timed out after \(String(format: "%g", seconds)) s (the whole request, answer included)")
            case .tooLarge: return fail(.tooLarge, "the answer is larger than \(URLSessionProbe.size(maxBody)), the most sous reads from an endpoint; stopped reading")
            case .redirected(let status, let to):
                return fail(.redirected, "the endpoint redirected (HTTP \(status)) to \(URLSessionProbe.printable(to)); sous does not follow redirects with the API key")
            case .unreachable(let why): return fail(.unreachable, why)
            case .badAnswer(let why): return fail(.badAnswer, why)
            case .cancelled: return CancellationError()
            }
        }
    }

    /// `1 MiB`, `64 KiB` or `1000 bytes`.
    static func size(_ n: Int) -> String {
        n >= 1 << 20 && n % (1 << 20) == 0 ? "\(n >> 20) MiB" : n >= 1 << 10 && n % (1 << 10) == 0 ? "\(n >> 10) KiB" : "\(n) bytes"
    }

    /// Server-chosen text (a Location) made safe to print: control characters escaped, at most 200 characters.
    static func printable(_ s: String) -> String {
        let escaped = s.unicodeScalars.map { $0.value < 0x20 || (0x7f..<0xa0).contains($0.value) ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
        return escaped.count > 200 ? escaped.prefix(200) + "…" : escaped
    }
}

/// Why an exchange failed, before the probe words it.
enum ExchangeProblem: Error {
    case timedOut, tooLarge, cancelled
    case redirected(status: Int, to: String)
    case unreachable(String)
    case badAnswer(String)
}

/// One request in flight, off the async pool; reports exactly once through `start`'s callback.
protocol Exchange: Sendable {
    func start(_ done: @escaping @Sendable (Result<HTTPResponse, ExchangeProblem>) -> Void)
    /// Stops early (the deadline passed or the task was cancelled); the callback may still come, and is ignored.
    func cancel()
}

/// The first of the answer, the deadline and a cancellation wins; later ones are dropped.
final class Completion: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<HTTPResponse, any Error>?
    private var early: Result<HTTPResponse, any Error>?
    private var finished = false

    func install(_ c: CheckedContinuation<HTTPResponse, any Error>) {
        lock.lock()
        if let early { self.early = nil; lock.unlock(); c.resume(with: early); return }
        continuation = c
        lock.unlock()
    }

    /// True when this was the first result.
    @discardableResult func finish(_ r: Result<HTTPResponse, any Error>) -> Bool {
        lock.lock()
        guard !finished else { lock.unlock(); return false }
        finished = true
        let c = continuation
        continuation = nil
        if c == nil { early = r }
        lock.unlock()
        c?.resume(with: r)
        return true
    }
}

/// HTTP/1.1 over a TCP socket on its own thread: non-blocking I/O polled in short slices up to the deadline,
/// `Connection: close`, a body framed by Content-Length, chunked or the close, capped while it is read.
final class SocketExchange: Exchange, @unchecked Sendable {
    let host: String, port: Int, request: Data, requestURL: URL, maxBody: Int, deadline: ContinuousClock.Instant
    private let lock = NSLock()
    private var stopped = false

    init(host: String, port: Int, request: Data, requestURL: URL, maxBody: Int, deadline: ContinuousClock.Instant) {
        self.host = host
        self.port = port
        self.request = request
        self.requestURL = requestURL
        self.maxBody = maxBody
        self.deadline = deadline
    }

    func start(_ done: @escaping @Sendable (Result<HTTPResponse, ExchangeProblem>) -> Void) {
        Thread.detachNewThread { done(Result { () throws(ExchangeProblem) in try self.run() }) }
    }

    func cancel() {
        lock.lock()
        stopped = true
        lock.unlock()
    }

    var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    func run() throws(ExchangeProblem) -> HTTPResponse {
        let fd = try connectSocket()
        defer { close(fd) }
        try sendAll(fd)
        var reader = ResponseReader(maxBody: maxBody, url: requestURL)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let start = ContinuousClock.now
        while true {
            try wait(fd, Int16(POLLIN))
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                throw .unreachable("reading the answer failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return try reader.finish() }
            let complete = try buffer.withUnsafeBufferPointer({ (b) throws(ExchangeProblem) in try reader.feed(b[..<n]) })
            if reader.firstByte == nil, reader.hasBody { reader.firstByte = .now - start }
            if complete { return try reader.finish() }
        }
    }

    /// Waits until `fd` is ready, in slices of at most 100 ms so a cancel is seen; throws at the deadline.
    func wait(_ fd: Int32, _ events: Int16) throws(ExchangeProblem) {
        while true {
            if isStopped { throw .cancelled }
            let left = deadline - .now
            if left <= .zero { throw .timedOut }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&p, 1, Int32(min(100, max(1, left / .milliseconds(1)))))
            if r > 0 { return }
            if r < 0 && errno != EINTR { throw .unreachable("poll failed: \(String(cString: strerror(errno)))") }
        }
    }

    func connectSocket() throws(ExchangeProblem) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let list else { throw .unreachable("unknown host (\(String(cString: gai_strerror(rc))))") }
        defer { freeaddrinfo(list) }
        var problem = ExchangeProblem.unreachable("connection refused")
        for ai in sequence(first: list, next: { $0.pointee.ai_next }) {
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if fd < 0 { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            #if canImport(Darwin)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
            #endif
            var err: Int32 = connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 ? 0 : errno
            if err == EINPROGRESS {
                do { try wait(fd, Int16(POLLOUT)) } catch { close(fd); throw error }
                var len = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { err = errno }
            }
            if err == 0 { return fd }
            close(fd)
            problem = .unreachable(err == ECONNREFUSED ? "connection refused" : "cannot connect: \(String(cString: strerror(err)))")
        }
        throw problem
    }

    func sendAll(_ fd: Int32) throws(ExchangeProblem) {
        #if canImport(Glibc)
        let flags = Int32(MSG_NOSIGNAL)
        #else
        let flags: Int32 = 0
        #endif
        var offset = 0
        while offset < request.count {
            try wait(fd, Int16(POLLOUT))
            let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, flags) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                throw .unreachable("sending the request failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }
}

/// Parses an HTTP/1.1 answer as it arrives. Headers are capped at 64 KiB, the body at `maxBody`.
struct ResponseReader {
    let maxBody: Int
    /// The request's URL, to resolve a relative Location against.
    let url: URL
    static let maxHead = 64 << 10
    private var pending: [UInt8] = []
    private var status = 0
    private var headers: [String: String] = [:]
    private var body = Data()
    private enum Framing { case head, length(Int), untilClose, chunkSize, chunkData(Int), chunkEnd, trailer, done }
    private var framing = Framing.head
    /// When the body's first byte arrived (set by the exchange).
    var firstByte: Duration?
    var hasBody: Bool { !body.isEmpty }

    init(maxBody: Int, url: URL) {
        self.maxBody = maxBody
        self.url = url
    }

    /// True once the answer is complete.
    mutating func feed(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) throws(ExchangeProblem) -> Bool {
        // What is left from the last feed was searched already (for the end of the head or of a line): a
        // trickle of bytes is scanned once, not once per byte.
        let searched = pending.count
        pending.append(contentsOf: bytes)
        var at = 0
        defer { pending.removeFirst(at) }
        func line() -> [UInt8]? {
            guard let cr = pending[max(at, searched)...].firstIndex(of: 10) else { return nil }
            let l = pending[at..<cr]
            at = cr + 1
            return Array(l.last == 13 ? l.dropLast() : l)
        }
        while true {
            switch framing {
            case .head:
                guard let end = pending[max(at, searched - 3)...].firstRange(of: [13, 10, 13, 10]) else {
                    if pending.count - at > Self.maxHead { throw .badAnswer("the answer's headers exceed 64 KiB") }
                    return false
                }
                if end.lowerBound - at > Self.maxHead { throw .badAnswer("the answer's headers exceed 64 KiB") }
                let text = String(decoding: pending[at..<end.lowerBound], as: UTF8.self)
                at = end.upperBound
                try parseHead(text)
            case .length(let n):
                let take = min(n - body.count, pending.count - at)
                body.append(contentsOf: pending[at..<at + take])
                at += take
                if body.count < n { return false }
                framing = .done
            case .untilClose:
                guard body.count + pending.count - at <= maxBody else { throw .tooLarge }
                body.append(contentsOf: pending[at...])
                at = pending.count
                return false
            case .chunkSize:
                guard let l = line() else {
                    if pending.count - at > 1024 { throw .badAnswer("a chunk size line is longer than 1 KiB") }
                    return false
                }
                let hex = String(decoding: l.prefix { $0 != 59 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                guard hex.count <= 16, let n = Int(hex, radix: 16), n >= 0 else { throw .badAnswer("a chunk size is not a hex number") }
                guard body.count + n <= maxBody else { throw .tooLarge }
                framing = n == 0 ? .trailer : .chunkData(n)
            case .chunkData(let n):
                let take = min(n, pending.count - at)
                body.append(contentsOf: pending[at..<at + take])
                at += take
                if take < n { framing = .chunkData(n - take); return false }
                framing = .chunkEnd
            case .chunkEnd:
                guard let l = line() else { return false }
                guard l.isEmpty else { throw .badAnswer("a chunk does not end with CRLF") }
                framing = .chunkSize
            case .trailer:
                guard let l = line() else {
                    if pending.count - at > Self.maxHead { throw .badAnswer("the answer's trailer exceeds 64 KiB") }
                    return false
                }
                if l.isEmpty { framing = .done }
            case .done:
                return true
            }
        }
    }

    private mutating func parseHead(_ text: String) throws(ExchangeProblem) {
        var lines = text.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), statusLine[1].count == 3, let code = Int(statusLine[1]) else {
            throw .badAnswer("the answer is not HTTP/1.x (status line \(URLSessionProbe.printable(String(text.prefix(40))).debugDescription))")
        }
        if (100..<200).contains(code) { return }  // an interim answer (100 Continue): the real one follows
        status = code
        for l in lines {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].trimmingCharacters(in: .whitespaces).lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if (300..<400).contains(code), let location = headers["location"] {
            throw .redirected(status: code, to: URL(string: location, relativeTo: url)?.absoluteString ?? location)
        }
        if code == 204 || code == 304 {
            framing = .done
        } else if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            framing = .chunkSize
        } else if let length = headers["content-length"] {
            guard let n = Int(length), n >= 0 else { throw .badAnswer("Content-Length is not a number") }
            guard n <= maxBody else { throw .tooLarge }
            framing = n == 0 ? .done : .length(n)
        } else {
            framing = .untilClose
        }
    }

    /// The answer, once complete or at the connection's close.
    func finish() throws(ExchangeProblem) -> HTTPResponse {
        switch framing {
        case .done, .untilClose: return HTTPResponse(status: status, body: body, contentType: headers["content-type"], firstByte: firstByte)
        case .head: throw .badAnswer(pending.isEmpty ? "the server closed the connection without answering" : "the server closed the connection inside the headers")
        default: throw .badAnswer("the server closed the connection before the answer was complete")
        }
    }
}

/// An https request over URLSession, streamed through the delegate so the cap holds; redirects refused.
final class SessionExchange: NSObject, Exchange, URLSessionDataDelegate, @unchecked Sendable {
    let request: URLRequest, maxBody: Int
    private let lock = NSLock()
    private var body = Data()
    private var status = 0
    private var contentType: String?
    private let start = ContinuousClock.now
    private var firstByte: Duration?
    private var redirect: (Int, String)?
    private var tooLarge = false
    private var task: URLSessionTask?
    private var done: (@Sendable (Result<HTTPResponse, ExchangeProblem>) -> Void)?

    init(request: URLRequest, maxBody: Int) {
        self.request = request
        self.maxBody = maxBody
    }

    func start(_ done: @escaping @Sendable (Result<HTTPResponse, ExchangeProblem>) -> Void) {
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = request.timeoutInterval
        config.timeoutIntervalForResource = request.timeoutInterval
        config.httpShouldSetCookies = false
        config.urlCache = nil
        // The session keeps its delegate (this) until it is invalidated, when the task completes.
        let session = URLSession(configuration: config, delegate: self, delegateQueue: nil)
        let t = session.dataTask(with: request)
        lock.lock()
        self.done = done
        task = t
        lock.unlock()
        t.resume()
    }

    func cancel() {
        lock.lock()
        let t = task
        lock.unlock()
        t?.cancel()
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        lock.lock()
        redirect = (response.statusCode, newRequest.url?.absoluteString ?? "?")
        lock.unlock()
        completionHandler(nil)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        lock.lock()
        status = (response as? HTTPURLResponse)?.statusCode ?? 0
        contentType = (response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Content-Type")
        if response.expectedContentLength > Int64(maxBody) { tooLarge = true }
        let stop = tooLarge
        lock.unlock()
        completionHandler(.allow)
        // FoundationNetworking never completes a task answered .cancel here; cancelling the task does.
        if stop { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.lock()
        if firstByte == nil, !data.isEmpty { firstByte = .now - start }
        if !tooLarge {
            if body.count + data.count > maxBody { tooLarge = true; body = Data() } else { body.append(data) }
        }
        let stop = tooLarge
        lock.unlock()
        if stop { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        session.finishTasksAndInvalidate()
        lock.lock()
        let result: Result<HTTPResponse, ExchangeProblem>
        if tooLarge {
            result = .failure(.tooLarge)
        } else if let (status, to) = redirect {
            result = .failure(.redirected(status: status, to: to))
        } else if let e = error as? URLError {
            switch e.code {
            case .cancelled: result = .failure(.cancelled)
            case .timedOut: result = .failure(.timedOut)
            case .cannotConnectToHost: result = .failure(.unreachable("connection refused"))
            case .cannotFindHost: result = .failure(.unreachable("unknown host"))
            case .badURL: result = .failure(.unreachable("URLSession refused the URL (FoundationNetworking on Linux takes no IPv6 address over https: use a host name)"))
            default: result = .failure(.unreachable(e.localizedDescription))
            }
        } else if let error {
            result = .failure(.unreachable("\(error)"))
        } else {
            result = .success(HTTPResponse(status: status, body: body, contentType: contentType, firstByte: firstByte))
        }
        let report = done
        done = nil
        body = Data()
        lock.unlock()
        report?(result)
    }
}
