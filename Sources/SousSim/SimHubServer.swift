import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// The simulated Hugging Face Hub: an HTTP/1.1 server speaking the part of the Hub API that huggingface_hub's
/// `snapshot_download` / `hf download` uses, over the repositories `SimHub.write` leaves in a directory. The real
/// `hf` CLI (scripts/hf-env) talks to it through `HF_ENDPOINT`.
///
/// What each route answers, and the client code it answers (huggingface_hub sources, by version and line):
///
/// - `GET /api/models/{repo_id}` and `/api/models/{repo_id}/revision/{revision}` — `HfApi.model_info`
///   (hf_api.py 0.36.2 :2651, 2.4.0 :3205 build this URL; `blobs=True` asks for sizes); `snapshot_download` calls it
///   through `repo_info` to resolve a branch to a commit (`repo_info.sha`) and, in 0.36.2, to list the files
///   (`repo_info.siblings`, _snapshot_download.py 0.36.2 :165/:260). The answer has `id`, `sha`, `siblings`
///   (`rfilename`, with `blobs`: `size`, `blobId`, `lfs`), `gated`, `private` (ModelInfo.__init__, hf_api.py 2.4.0 :914).
/// - `GET /api/models/{repo_id}/tree/{revision}[/{path}]` — `list_repo_tree` (hf_api.py 2.4.0 :4023), which 1.x and
///   2.x `snapshot_download` use for the file list (_snapshot_download.py 1.33.0 :403, 2.4.0 :292): entries
///   `{"type": "file", "path", "size", "oid", "lfs": {"oid", "size", "pointerSize"}}` (RepoFile.__init__, hf_api.py 2.4.0 :712-716).
///   One page: no `Link: rel="next"` header (utils/_pagination.py 2.4.0 :69).
/// - `HEAD|GET /{repo_id}/resolve/{revision}/{filename}` — `hf_hub_url` (constants.py HUGGINGFACE_CO_URL_TEMPLATE,
///   2.4.0 :70) then `get_hf_file_metadata` (file_download.py 2.4.0 :1618), which reads `X-Repo-Commit`,
///   `X-Linked-Etag` or `ETag`, `X-Linked-Size` or `Content-Length`, and `Location` (:1677-1688). A small file is
///   answered here (200, ETag = its git blob sha1, which names its blob in the cache). An LFS file (the
///   safetensors shards) is a 302 to the CDN listener, as the Hub redirects LFS files to its CDN: the HEAD does not
///   follow a redirect to another origin (utils/_http.py 2.4.0 :735-781 `_httpx2_follow_hub_redirects_with_backoff`,
///   file_download.py 0.36.2 :264-302 and :1472 `_request_wrapper(follow_relative_redirects=True)`), so the metadata is the 302's own headers
///   (`X-Linked-Etag` = the content's sha256, `X-Linked-Size`), and `http_get` then downloads `Location`.
/// - `HEAD|GET /cdn/{sha256}?expires=…&signature=…` on a second address (another host, like the Hub's CDN host:
///   huggingface_hub 1.33.0 follows a redirect whose host name is the Hub's own, whatever the port,
///   utils/_http.py 1.33.0 :767 and :777-780 `_is_same_or_hub_host`):
///   the bytes, with `Range: bytes=N-` answered 206 + `Content-Range`, which is how `http_get` resumes a partial
///   `.incomplete` file (file_download.py 2.4.0 :376-378 `_adjust_range_header`, :405 a 200 to a Range starts over).
///   The URL is signed and expires, like the CDN's; throttled to `rate` bytes per second over all connections.
///
/// Errors carry the status codes and `X-Error-Code` / `X-Error-Message` headers `hf_raise_for_status` reads
/// (utils/_http.py 2.4.0 :826-960; 1.33.0 :796): `RepoNotFound` (401 without a token, 404 with one: the Hub does not confirm a
/// repository exists to an anonymous caller, the comment at :939-942), `RevisionNotFound` (404), `EntryNotFound`
/// (404, with X-Repo-Commit, file_download.py 2.4.0 :1774), `GatedRepo` (401 without a token, 403 with a token not on
/// the repository's authorized list; the messages as the Hub words them, quoted in huggingface_hub users' reports:
/// github.com/ToTheBeginning/PuLID/issues/97 and github.com/huggingface/dataset-viewer/issues/2083), and 401
/// `Invalid credentials in Authorization header` for an unknown token (utils/_http.py 2.4.0 :935).
public final class SimHubServer: @unchecked Sendable {
    public let hub: String
    public let host: String
    /// The CDN's address: another host name than the Hub's (127.0.0.2 beside 127.0.0.1, 10.213.0.2 beside 10.213.0.1).
    public let cdnHost: String
    public private(set) var port = 0
    public private(set) var cdnPort = 0
    /// Bytes per second across every download (0: as fast as it goes); `<hub>/.rate` overrides it while it exists.
    public let rate: Int
    private var listeners: [Int32] = []
    private let lock = NSLock()
    private var nextSlot = 0.0
    private let secret = UUID().uuidString
    private var stopped = false

    public var endpoint: String { "http://\(host):\(port)" }

    public init(hub: String, host: String = "127.0.0.1", port: Int = 0, cdnHost: String? = nil, cdnPort: Int = 0, rate: Int = 0) throws {
        self.hub = hub
        self.host = host
        self.cdnHost = cdnHost ?? Self.neighbour(host)
        self.rate = rate
        let (a, p) = try Self.listen(host, port)
        let (b, q) = try Self.listen(self.cdnHost, cdnPort)
        listeners = [a, b]
        self.port = p
        self.cdnPort = q
    }

    /// Serves on background threads until `stop`.
    public func start() {
        for (fd, cdn) in [(listeners[0], false), (listeners[1], true)] {
            Thread.detachNewThread { [self] in acceptLoop(fd, cdn: cdn) }
        }
    }

    /// Serves in the foreground, forever (the `sous sim hub-serve` process).
    public func run() -> Never {
        Thread.detachNewThread { [self] in acceptLoop(listeners[1], cdn: true) }
        acceptLoop(listeners[0], cdn: false)
        exit(0)
    }

    public func stop() {
        lock.lock(); stopped = true; lock.unlock()
        for fd in listeners { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
    }

    /// The next address: a.b.c.d → a.b.c.(d+1).
    static func neighbour(_ host: String) -> String {
        var parts = host.split(separator: ".").map(String.init)
        if parts.count == 4, let last = Int(parts[3]), last < 254 { parts[3] = String(last + 1) }
        return parts.joined(separator: ".")
    }

    static func listen(_ host: String, _ port: Int) throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw UsageError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { close(fd); throw UsageError("not an IPv4 address: \(host)") }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, Glibc.listen(fd, 64) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw UsageError("the simulated hub cannot listen on \(host):\(port): \(why)", hint: "sous sim down, then sous sim up")
        }
        var bound = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, Int(UInt16(bigEndian: bound.sin_port)))
    }

    func acceptLoop(_ listener: Int32, cdn: Bool) {
        while true {
            var peer = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = withUnsafeMutablePointer(to: &peer) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &len) } }
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            let ip = UInt32(bigEndian: peer.sin_addr.s_addr)
            let client = "\(ip >> 24).\((ip >> 16) & 0xff).\((ip >> 8) & 0xff).\(ip & 0xff)"
            Thread.detachNewThread { [self] in connection(fd, client: client, cdn: cdn) }
        }
    }

    // MARK: HTTP

    struct Request {
        var method: String
        var path: String
        var query: [String: String]
        var headers: [String: String]
        var keepAlive: Bool
    }

    struct Response {
        var status: Int
        var headers: [(String, String)] = []
        var body = Data()
        /// A file range to send after the headers, instead of `body`.
        var file: (path: String, offset: Int, length: Int)?
        var throttled = false
    }

    static let reasons = [200: "OK", 206: "Partial Content", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                          404: "Not Found", 405: "Method Not Allowed", 416: "Range Not Satisfiable", 500: "Internal Server Error"]

    func connection(_ fd: Int32, client: String, cdn: Bool) {
        defer { close(fd) }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var pending = Data()
        // Keep-alive: requests on one connection, one after another, until the client closes it.
        for _ in 0..<10_000 {
            guard let (request, rest) = readRequest(fd, pending) else { return }
            pending = rest
            var response: Response
            do { response = try handle(request, cdn: cdn) } catch {
                response = Self.error(500, nil, "\(error)")
            }
            let sent = send(response, to: fd, head: request.method == "HEAD", keepAlive: request.keepAlive)
            log("\(client) \(request.method) \(request.path) \(response.status) \(sent) \(request.headers["range"] ?? "-")")
            if sent < 0 || !request.keepAlive { return }
        }
    }

    /// Reads one request head (at most 16 KiB; a body, which no route takes, is read and dropped up to 1 MiB).
    func readRequest(_ fd: Int32, _ start: Data) -> (Request, Data)? {
        var data = start
        let end = Data("\r\n\r\n".utf8)
        var chunk = [UInt8](repeating: 0, count: 16384)
        while data.range(of: end) == nil {
            guard data.count < 16384 else { return nil }
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { return nil }
            data.append(contentsOf: chunk[0..<n])
        }
        let r = data.range(of: end)!
        guard let head = String(data: data[data.startIndex..<r.lowerBound], encoding: .utf8) else { return nil }
        var rest = Data(data[r.upperBound...])
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ").map(String.init)
        guard parts.count == 3 else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if let length = headers["content-length"].flatMap(Int.init), length > 0 {
            guard length <= 1 << 20 else { return nil }
            while rest.count < length {
                let n = recv(fd, &chunk, chunk.count, 0)
                guard n > 0 else { return nil }
                rest.append(contentsOf: chunk[0..<n])
            }
            rest = Data(rest.dropFirst(length))
        }
        let target = parts[1]
        let pathPart = String(target.split(separator: "?", maxSplits: 1).first ?? "")
        var query: [String: String] = [:]
        if let q = target.split(separator: "?", maxSplits: 1).dropFirst().first {
            for kv in q.split(separator: "&") {
                let p = kv.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
                query[p[0]] = p.count > 1 ? p[1] : ""
            }
        }
        let keepAlive = parts[2] == "HTTP/1.1" ? headers["connection"]?.lowercased() != "close" : headers["connection"]?.lowercased() == "keep-alive"
        return (Request(method: parts[0], path: pathPart, query: query, headers: headers, keepAlive: keepAlive), rest)
    }

    /// Writes the response; returns the body bytes sent, or -1 when the client went away.
    func send(_ r: Response, to fd: Int32, head: Bool, keepAlive: Bool) -> Int {
        var text = "HTTP/1.1 \(r.status) \(Self.reasons[r.status] ?? "Status")\r\n"
        let length = r.file?.length ?? r.body.count
        for (k, v) in r.headers { text += "\(k): \(v)\r\n" }
        text += "Content-Length: \(length)\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        guard write(fd, Data(text.utf8)) else { return -1 }
        if head { return 0 }
        guard let f = r.file else { return write(fd, r.body) ? r.body.count : -1 }
        let file = open(f.path, O_RDONLY)
        guard file >= 0 else { return -1 }
        defer { close(file) }
        var sent = 0
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        while sent < f.length {
            let want = min(buffer.count, f.length - sent)
            let n = pread(file, &buffer, want, off_t(f.offset + sent))
            guard n > 0 else { return -1 }
            if r.throttled { pace(n) }
            // A link that breaks once part way (`<hub>/.drop-after` bytes into a CDN transfer, then removed): the
            // client's in-process retry resumes with a Range request (file_download.py 2.4.0 :376-378).
            if r.throttled, let drop = dropAfter(), sent + n > drop {
                try? FileManager.default.removeItem(atPath: hub + "/.drop-after")
                _ = write(fd, Data(buffer[0..<max(0, drop - sent)]))
                return -1
            }
            guard write(fd, Data(buffer[0..<n])) else { return -1 }
            sent += n
        }
        return sent
    }

    func write(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return false }
                off += n
            }
            return true
        }
    }

    /// One shared link: each chunk takes the next `bytes / rate` seconds of it, whichever connection sends it.
    func pace(_ bytes: Int) {
        let rate = currentRate
        guard rate > 0 else { return }
        let now = Date().timeIntervalSince1970
        lock.lock()
        let start = max(now, nextSlot)
        nextSlot = start + Double(bytes) / Double(rate)
        let until = nextSlot
        lock.unlock()
        let wait = until - now
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }

    func dropAfter() -> Int? {
        guard let text = try? String(contentsOfFile: hub + "/.drop-after", encoding: .utf8) else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    var currentRate: Int {
        if let text = try? String(contentsOfFile: hub + "/.rate", encoding: .utf8), let r = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) { return max(0, r) }
        return rate
    }

    func log(_ line: String) {
        lock.lock(); defer { lock.unlock() }
        let path = hub + "/.requests.log"
        if let h = FileHandle(forWritingAtPath: path) ?? (FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil) {
            h.seekToEndOfFile()
            h.write(Data((line + "\n").utf8))
            h.closeFile()
        }
    }

    // MARK: routes

    /// A repository as `SimHub.write` left it: `<hub>/<org>/<name>/` and its `.sim-repo.json`.
    struct Repo {
        struct File { var name: String, size: Int, oid: String, lfs: (sha256: String, pointerSize: Int)? }
        var id: String, dir: String, commit: String, gated: Bool, files: [File]
    }

    func repo(_ id: String) -> Repo? {
        guard id.range(of: #"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"#, options: .regularExpression) != nil, !id.contains("..") else { return nil }
        let dir = hub + "/" + id
        guard let data = FileManager.default.contents(atPath: dir + "/.sim-repo.json"),
              let meta = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let commit = meta["revision"] as? String, let files = meta["files"] as? [[String: Any]] else { return nil }
        return Repo(id: id, dir: dir, commit: commit, gated: meta["gated"] as? Bool ?? false, files: files.compactMap { f in
            guard let name = f["name"] as? String, let size = f["size"] as? Int, let oid = f["oid"] as? String else { return nil }
            let lfs = (f["sha256"] as? String).map { ($0, f["pointer_size"] as? Int ?? 0) }
            return Repo.File(name: name, size: size, oid: oid, lfs: lfs)
        }.sorted { $0.name < $1.name })
    }

    func tokens(_ file: String) -> Set<String> {
        Set(((try? String(contentsOfFile: hub + "/" + file, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }

    enum Caller { case anonymous, authorized, noAccess, invalid }

    func caller(_ r: Request) -> Caller {
        guard let auth = r.headers["authorization"], auth.hasPrefix("Bearer ") else { return .anonymous }
        let token = String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        if tokens(".tokens").contains(token) { return .authorized }
        if tokens(".tokens-noaccess").contains(token) { return .noAccess }
        return .invalid
    }

    static func error(_ status: Int, _ code: String?, _ message: String, commit: String? = nil) -> Response {
        var r = Response(status: status)
        if let code { r.headers.append(("X-Error-Code", code)) }
        r.headers.append(("X-Error-Message", message))
        if let commit { r.headers.append(("X-Repo-Commit", commit)) }
        r.headers.append(("Content-Type", "application/json; charset=utf-8"))
        r.body = (try? JSONSerialization.data(withJSONObject: ["error": message])) ?? Data()
        return r
    }

    static func json(_ object: Any) -> Response {
        var r = Response(status: 200)
        r.headers.append(("Content-Type", "application/json; charset=utf-8"))
        r.body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return r
    }

    /// `{org}/{name}` then the rest, from path components.
    func split(_ components: [String]) -> (id: String, rest: [String])? {
        guard components.count >= 2 else { return nil }
        return (components[0] + "/" + components[1], Array(components.dropFirst(2)))
    }

    func handle(_ r: Request, cdn: Bool) throws -> Response {
        guard r.method == "GET" || r.method == "HEAD" else { return Self.error(405, nil, "Method not allowed") }
        let components = r.path.split(separator: "/", omittingEmptySubsequences: true).map { String($0).removingPercentEncoding ?? String($0) }
        if cdn {
            guard components.count == 2, components[0] == "cdn" else { return Self.error(404, nil, "Not found") }
            return cdnFile(components[1], r)
        }
        let who = caller(r)
        if who == .invalid { return Self.error(401, nil, "Invalid credentials in Authorization header") }
        if components.first == "api", components.count >= 2, components[1] == "models", let (id, rest) = split(Array(components.dropFirst(2))) {
            guard let repo = repo(id) else { return notFound(who) }
            switch rest.first {
            case nil: return info(repo, revision: "main", r)
            case "revision" where rest.count == 2: return info(repo, revision: rest[1], r)
            case "tree" where rest.count >= 2: return tree(repo, revision: rest[1], path: rest.dropFirst(2).joined(separator: "/"))
            default: return Self.error(404, nil, "Not found")
            }
        }
        if components.first == "api" { return notFound(who) }
        if let (id, rest) = split(components), rest.first == "resolve", rest.count >= 3 {
            guard let repo = repo(id) else { return notFound(who) }
            return resolve(repo, revision: rest[1], filename: rest.dropFirst(2).joined(separator: "/"), who: who)
        }
        return Self.error(404, nil, "Not found")
    }

    func notFound(_ who: Caller) -> Response {
        who == .anonymous ? Self.error(401, "RepoNotFound", "Repository not found") : Self.error(404, "RepoNotFound", "Repository not found")
    }

    /// The commit a revision names: `main`, or the commit itself (a full 40-hex id).
    func commit(_ repo: Repo, _ revision: String) -> String? {
        revision == "main" || revision == repo.commit ? repo.commit : nil
    }

    func info(_ repo: Repo, revision: String, _ r: Request) -> Response {
        guard let commit = commit(repo, revision) else { return Self.error(404, "RevisionNotFound", "Invalid rev id: \(revision)") }
        let blobs = r.query["blobs"].map { $0 == "True" || $0 == "true" || $0 == "1" } ?? false
        let siblings: [[String: Any]] = repo.files.map { f in
            var s: [String: Any] = ["rfilename": f.name]
            if blobs {
                s["size"] = f.size
                s["blobId"] = f.oid
                if let l = f.lfs { s["lfs"] = ["sha256": l.sha256, "size": f.size, "pointerSize": l.pointerSize] }
            }
            return s
        }
        let org = String(repo.id.split(separator: "/")[0])
        return Self.json(["_id": String(sha256Hex(repo.id).prefix(24)), "id": repo.id, "modelId": repo.id, "author": org, "sha": commit,
                          "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z", "private": false,
                          "gated": repo.gated ? "manual" as Any : false as Any, "disabled": false, "downloads": 0, "likes": 0,
                          "library_name": "transformers", "tags": ["transformers", "safetensors"], "siblings": siblings,
                          "usedStorage": repo.files.reduce(0) { $0 + $1.size }])
    }

    func tree(_ repo: Repo, revision: String, path: String) -> Response {
        guard commit(repo, revision) != nil else { return Self.error(404, "RevisionNotFound", "Invalid rev id: \(revision)") }
        let entries: [[String: Any]] = repo.files.filter { path.isEmpty || $0.name.hasPrefix(path + "/") }.map { f in
            var e: [String: Any] = ["type": "file", "path": f.name, "size": f.size, "oid": f.oid]
            if let l = f.lfs { e["lfs"] = ["oid": l.sha256, "size": f.size, "pointerSize": l.pointerSize] }
            return e
        }
        return Self.json(entries)
    }

    func resolve(_ repo: Repo, revision: String, filename: String, who: Caller) -> Response {
        guard let commit = commit(repo, revision) else { return Self.error(404, "RevisionNotFound", "Invalid rev id: \(revision)") }
        if repo.gated {
            switch who {
            case .anonymous:
                return Self.error(401, "GatedRepo", "Access to model \(repo.id) is restricted. You must have access to it and be authenticated to access it. Please log in.")
            case .noAccess:
                return Self.error(403, "GatedRepo", "Access to model \(repo.id) is restricted and you are not in the authorized list. Visit https://huggingface.co/\(repo.id) to ask for access.")
            case .authorized, .invalid: break
            }
        }
        guard let f = repo.files.first(where: { $0.name == filename }) else {
            return Self.error(404, "EntryNotFound", "Entry not found", commit: commit)
        }
        var r = Response(status: 200)
        r.headers.append(("X-Repo-Commit", commit))
        r.headers.append(("Accept-Ranges", "bytes"))
        if let l = f.lfs {
            // The Hub's answer for an LFS file: a redirect to a signed CDN URL, the content's sha256 and size beside it.
            let expires = Int(Date().timeIntervalSince1970) + 3600
            r.status = 302
            r.headers += [("Location", "http://\(cdnHost):\(cdnPort)/cdn/\(l.sha256)?expires=\(expires)&signature=\(signature(l.sha256, expires))"),
                          ("ETag", "\"\(f.oid)\""), ("X-Linked-Etag", "\"\(l.sha256)\""), ("X-Linked-Size", String(f.size))]
            return r
        }
        r.headers += [("ETag", "\"\(f.oid)\""), ("Content-Type", "application/octet-stream")]
        r.file = (repo.dir + "/" + f.name, 0, f.size)
        return r
    }

    func signature(_ sha: String, _ expires: Int) -> String { String(sha256Hex("\(secret):\(sha):\(expires)").prefix(32)) }

    func cdnFile(_ sha: String, _ r: Request) -> Response {
        guard sha.range(of: "^[0-9a-f]{64}$", options: .regularExpression) != nil, let expires = r.query["expires"].flatMap(Int.init),
              r.query["signature"] == signature(sha, expires) else {
            return Self.error(403, nil, "Request has an invalid or missing signature")
        }
        guard expires >= Int(Date().timeIntervalSince1970) else { return Self.error(403, nil, "Request has expired") }
        // Which repository holds it: the blob is the same wherever it is.
        let ids = ((try? FileManager.default.contentsOfDirectory(atPath: hub)) ?? []).filter { !$0.hasPrefix(".") }.flatMap { org in
            ((try? FileManager.default.contentsOfDirectory(atPath: hub + "/" + org)) ?? []).map { "\(org)/\($0)" }
        }
        for id in ids.sorted() {
            guard let repo = repo(id), let f = repo.files.first(where: { $0.lfs?.sha256 == sha }) else { continue }
            var resp = Response(status: 200)
            resp.throttled = true
            resp.headers += [("ETag", "\"\(sha)\""), ("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream")]
            var offset = 0, end = f.size - 1
            if let range = r.headers["range"] {
                guard let m = range.firstMatch(of: /^bytes=(\d+)-(\d*)$/), let start = Int(m.1), start < f.size else {
                    var bad = Self.error(416, nil, "Range not satisfiable")
                    bad.headers.append(("Content-Range", "bytes */\(f.size)"))
                    return bad
                }
                offset = start
                if let e = Int(m.2) { end = min(e, f.size - 1) }
                resp.status = 206
                resp.headers.append(("Content-Range", "bytes \(offset)-\(end)/\(f.size)"))
            }
            resp.file = (repo.dir + "/" + f.name, offset, max(0, end - offset + 1))
            return resp
        }
        return Self.error(404, nil, "Not found")
    }
}

/// The simulated pair's hub: the server as a detached process on the bridge address, and the real `hf` CLI of one
/// huggingface_hub generation on every node, pointed at it.
extension SimHubServer {
    /// The simulation bridge's own address (the host end of `sousbr0`), the CDN's beside it, and fixed ports.
    public static let simAddress = "10.213.0.1"
    public static let simCDNAddress = "10.213.0.2"
    public static let simPort = 8420
    public static let simCDNPort = 8421
    /// The generations scripts/hf-env installs: the last 0.x, the last 1.x, the newest release.
    public static let generations = ["0.36.2", "1.33.0", "2.4.0"]
    public static let defaultGeneration = "2.4.0"
    /// Where scripts/hf-env keeps one virtualenv per version (SOUS_HF_CACHE moves it, as in the script).
    public static var cliCache: String { ProcessInfo.processInfo.environment["SOUS_HF_CACHE"] ?? "/var/cache/sous/hf" }

    /// The generation the nodes get: `sous sim up --hf-version V` (which sets it) or SOUS_SIM_HF_VERSION.
    public static var generation: String { ProcessInfo.processInfo.environment["SOUS_SIM_HF_VERSION"] ?? defaultGeneration }

    /// The `hf` of an installed generation, or the command that installs it.
    public static func cli(_ version: String) throws -> String {
        guard version.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+$"#, options: .regularExpression) != nil else {
            throw UsageError("`\(version)` is not a huggingface_hub version", hint: "one of \(generations.joined(separator: ", "))")
        }
        let dir = "\(cliCache)/\(version)"
        guard FileManager.default.fileExists(atPath: dir + "/.sous-ok"), FileManager.default.isExecutableFile(atPath: dir + "/bin/hf") else {
            throw UsageError("huggingface_hub \(version) is not installed in \(dir)", hint: "bash scripts/hf-env \(version)")
        }
        return dir + "/bin/hf"
    }

    /// The environment the nodes' CLI runs with: the simulated hub as HF_ENDPOINT (constants.py: ENDPOINT =
    /// os.getenv("HF_ENDPOINT")), and no update check (cli/_cli_utils.py `check_cli_update` asks PyPI otherwise).
    public static func cliEnvironment(endpoint: String) -> [String: String] {
        ["HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"]
    }

    /// Writes `hf` (and `huggingface-cli` where the generation has one) into a node's /usr/local/bin: a script
    /// that sets the environment above and execs the generation's real CLI.
    public static func installCLI(in bin: String, version: String = generation, endpoint: String = "http://\(simAddress):\(simPort)") throws {
        let hf = try cli(version)
        let env = try cliEnvironment(endpoint: endpoint).sorted { $0.key < $1.key }.map { "\($0.key)=\(try ShellQuote.quote($0.value))" }.joined(separator: " ")
        for name in ["hf", "huggingface-cli"] {
            let path = "\(bin)/\(name)"
            try? FileManager.default.removeItem(atPath: path)
            let target = (hf as NSString).deletingLastPathComponent + "/" + name
            guard FileManager.default.isExecutableFile(atPath: target) else { continue }
            try """
            #!/bin/sh
            # sous sim: the real Hugging Face CLI (huggingface_hub \(version), scripts/hf-env) against the simulated hub.
            export \(env)
            exec \(try ShellQuote.quote(target)) "$@"

            """.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
        }
    }

    static func pidFile(_ hub: String) -> String { hub + "/.server.pid" }

    /// Starts `sous sim hub-serve` detached on the bridge address; returns the line to print.
    public static func startDetached(hub: String, rate: Int, version: String = generation) throws -> String {
        _ = try cli(version)
        stopDetached(hub: hub)
        // The CDN's own address on the bridge (the nodes reach it on-link, as they reach 10.213.0.1).
        try Local.run("/usr/sbin/ip", ["addr", "replace", "\(simCDNAddress)/24", "dev", SimLayout.bridge])
        let log = hub + "/.server.log"
        let pid = try Local.spawn(Local.selfExecutable, ["sim", "hub-serve", "--hub", hub, "--host", simAddress, "--port", String(simPort),
                                                         "--cdn-host", simCDNAddress, "--cdn-port", String(simCDNPort), "--rate", String(rate)],
                                  output: log, detach: true)
        try String(pid).write(toFile: pidFile(hub), atomically: true, encoding: .utf8)
        // The images' `hf` (SimRegistry's rootfs) execs /var/cache/sous/hf/current/bin/hf: the same wrapper as the nodes'.
        try FileManager.default.createDirectory(atPath: cliCache + "/current/bin", withIntermediateDirectories: true)
        try installCLI(in: cliCache + "/current/bin", version: version)
        try JSONSerialization.data(withJSONObject: ["endpoint": "http://\(simAddress):\(simPort)", "hf_version": version], options: [.sortedKeys])
            .write(to: URL(fileURLWithPath: hub + "/.server.json"))
        for _ in 0..<250 {
            if (try? Local.run("/bin/bash", ["-c", "exec 3<>/dev/tcp/\(simAddress)/\(simPort)"])) != nil {
                return "hub: http://\(simAddress):\(simPort) (huggingface_hub \(version) on the nodes\(rate > 0 ? ", \(rate / 1_000_000) MB/s" : ""))"
            }
            if !Local.alive(pid) { break }
            usleep(20_000)
        }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw UsageError("the simulated hub did not start: \(text.trimmingCharacters(in: .whitespacesAndNewlines))", hint: "sous sim down, then sous sim up")
    }

    /// Stops the server `startDetached` started (by its pid, once its command line shows it is that server).
    public static func stopDetached(hub: String) {
        guard let text = try? String(contentsOfFile: pidFile(hub), encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
        let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        if cmdline.contains("hub-serve") && cmdline.contains(hub) { Local.stop(pid, grace: 2) }
        try? FileManager.default.removeItem(atPath: pidFile(hub))
    }
}
