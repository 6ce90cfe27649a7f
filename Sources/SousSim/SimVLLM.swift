import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// Where a simulated node keeps its modelled state (inside the node's own /var/lib).
public enum SimPaths {
    static let root = "/var/lib/sous-sim"
    static let faults = "/var/lib/sous-sim/faults"
    static let docker = "/var/lib/sous-sim/docker"
    static let config = "/var/lib/sous-sim/config.json"

    static func faultsOn() -> Set<SimFault> {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: faults)) ?? []
        return Set(names.compactMap(SimFault.init(rawValue:)))
    }

    static func string(_ key: String) -> String? {
        guard let data = FileManager.default.contents(atPath: config),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return obj[key] as? String
    }

    static func setting(_ key: String, default value: Double) -> Double {
        guard let data = FileManager.default.contents(atPath: config),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return value }
        return (obj[key] as? Double) ?? (obj[key] as? Int).map(Double.init) ?? value
    }
}

/// The simulated `vllm serve` process started by the modelled `docker run`: parses the real flags, joins
/// the ranks over TCP at --master-addr/--master-port, waits a simulated load time, then (rank 0) serves HTTP.
public enum SimVLLM {
    static func log(_ s: String) {
        let stamp = ISO8601DateFormatter().string(from: Date())
        FileHandle.standardOutput.write(Data("INFO \(stamp) \(s)\n".utf8))
    }

    /// Exits; Docker records the status as the container's State.ExitCode.
    static func die(_ code: Int32) -> Never { exit(code) }

    public static func main(_ argv: [String]) -> Never {
        let env = ProcessInfo.processInfo.environment
        // The image says which release it is and which faults its build has (SimRegistry.push writes its env).
        let version = env["SOUS_SIM_VLLM_VERSION"].flatMap(VLLMVersion.init) ?? VLLMVersion(0, 24, 0)
        let args: ServeArgs
        do { args = try ServeArgs.parse(argv) } catch {
            FileHandle.standardError.write(Data("usage: vllm serve [model_tag] [options]\n\(error)\n".utf8))
            die(2)
        }
        // Images tagged …-sim-<fault> misbehave on every node: a bad release to roll back from.
        let imageFaults = Set((env["SOUS_SIM_IMAGE_FAULTS"] ?? "").split(separator: ",").compactMap { SimFault(rawValue: String($0)) })
        let faults = SimPaths.faultsOn().union(imageFaults)
        log("vLLM API server version \(version)")
        log("non-default args: {'model': '\(args.model)', 'served_model_name': ['\(args.servedName)'], 'tensor_parallel_size': \(args.tensorParallelSize), 'nnodes': \(args.nnodes), 'node_rank': \(args.nodeRank), 'headless': \(args.headless ? "True" : "False")}")
        // Parser flags are checked before anything loads (ServeArgs.startupError cites where vLLM does it).
        if let error = args.startupError(version: version) {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            die(1)
        }
        if faults.contains(.crashOnStart) {
            FileHandle.standardError.write(Data("RuntimeError: CUDA error: an illegal memory access was encountered (simulated crash-on-start)\n".utf8))
            die(1)
        }
        if args.tensorParallelSize > args.nnodes * 1 {
            FileHandle.standardError.write(Data("ValueError: Tensor parallel size (\(args.tensorParallelSize)) cannot be larger than the number of available GPUs (\(args.nnodes)).\n".utf8))
            die(1)
        }
        // Offline (HF_HUB_OFFLINE=1, as sous renders it), a checkpoint missing from this node's cache is fatal.
        do {
            let snapshots = "\(env["HF_HOME"] ?? "/root/.cache/huggingface")/hub/models--\(args.model.replacingOccurrences(of: "/", with: "--"))/snapshots"
            let found = ((try? FileManager.default.contentsOfDirectory(atPath: snapshots)) ?? []).contains { FileManager.default.fileExists(atPath: "\(snapshots)/\($0)/config.json") }
            if !found {
                FileHandle.standardError.write(Data("OSError: We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached files.\nCheck your internet connection or see how to run the library in offline mode at 'https://huggingface.co/docs/transformers/installation#offline-mode'.\n".utf8))
                die(1)
            }
        }
        var load = SimPaths.setting("load_seconds", default: 2)
        if faults.contains(.slowLoad) { load *= 10 }

        if args.nodeRank > 0 {
            runWorker(args, faults: faults, load: load)
        }
        // Rank 0: wait for every other rank to join, then load, then check parsers (vLLM fails there, after loading).
        let joined = acceptRanks(args)
        log("All \(joined.count + 1) ranks joined; loading weights for \(args.model)")
        Thread.sleep(forTimeInterval: load)
        for fd in joined { _ = write(fd, "R", 1) }
        let state = EngineState(api: SimAPI(args: args, version: version, versionString: version.description,
                                            joinedRanks: joined.count + 1, apiKey: env["VLLM_API_KEY"].flatMap { $0.isEmpty ? nil : $0 },
                                            faults: faults), sticky: imageFaults)
        for fd in joined {
            // A rank that goes away: nothing notices while idle (no remote-worker monitor,
            // multiproc_executor.py:295-329; /health only checks a flag, serve/instrumentator/health.py:22-33), so
            // /health stays 200; the next request fails (SimAPI.rankLost) and the server exits.
            Thread.detachNewThread {
                var b: UInt8 = 0
                while read(fd, &b, 1) > 0 {}
                state.loseRank()
            }
        }
        if faults.contains(.crashLater) {
            Thread.detachNewThread { Thread.sleep(forTimeInterval: 3); FileHandle.standardError.write(Data("RuntimeError: NCCL error (simulated crash-later)\n".utf8)); die(1) }
        }
        serveHTTP(args, state: state)
    }

    final class EngineState: @unchecked Sendable {
        /// Faults an operator can switch on and off while the engine runs (read on every request).
        static let switchable: Set<SimFault> = [.engineDead, .wedge, .wrongParser, .malformedArguments, .streamMarkup, .lateMarkup]
        private let lock = NSLock()
        private var api: SimAPI
        /// What stays whatever the fault files say: the image's own faults, and a dead engine.
        private var sticky: Set<SimFault>
        init(api: SimAPI, sticky: Set<SimFault>) {
            self.api = api
            self.sticky = sticky
        }
        /// Completions being answered (what /metrics reports as running).
        private var inFlight = 0
        private var rankLost = false
        func kill() { lock.lock(); sticky.insert(.engineDead); lock.unlock() }
        func loseRank() { lock.lock(); rankLost = true; lock.unlock() }
        func begin() { lock.lock(); inFlight += 1; lock.unlock() }
        func end() { lock.lock(); inFlight -= 1; lock.unlock() }
        func current() -> SimAPI {
            lock.lock(); defer { lock.unlock() }
            var a = api
            a.faults = sticky.union(SimPaths.faultsOn().intersection(Self.switchable))
            a.running = inFlight
            a.rankLost = rankLost
            return a
        }
    }

    static func runWorker(_ args: ServeArgs, faults: Set<SimFault>, load: Double) -> Never {
        if faults.contains(.workerNeverJoins) {
            log("rank \(args.nodeRank) waiting (simulated worker-never-joins)")
            while true { sleep(3600) }
        }
        log("rank \(args.nodeRank) (headless) connecting to \(args.masterAddr):\(args.masterPort)")
        while true {
            if let fd = connectTCP(args.masterAddr, args.masterPort) {
                let hello = "JOIN \(args.nodeRank)\n"
                _ = hello.withCString { write(fd, $0, strlen($0)) }
                log("rank \(args.nodeRank) joined; loading weights")
                var b: UInt8 = 0
                // Until rank 0 says the engine is up, a lost connection fails this rank's start: vLLM raises
                // "WorkerProc initialization failed due to an exception in a background process" and the headless
                // launcher exits (v1/executor/multiproc_executor.py:779-805, 934-941).
                if read(fd, &b, 1) != 1 {
                    log("ERROR WorkerProc initialization failed due to an exception in a background process. See stack trace for root cause.")
                    die(1)
                }
                while read(fd, &b, 1) > 0 {}
                // vLLM 0.28's headless rank never notices rank 0 going away: its worker waits on rank 0's message
                // queue with no timeout (v1/executor/multiproc_executor.py:1026-1032; a remote reader's
                // socket.poll(timeout=None), distributed/device_communicators/shm_broadcast.py:882-916) and its
                // launcher watches only the local worker (entrypoints/cli/serve.py:223-224). It stays, silent.
                while true { sleep(3600) }
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    static func acceptRanks(_ args: ServeArgs) -> [Int32] {
        guard args.nnodes > 1 else { return [] }
        let listener = listenTCP(port: args.masterPort)
        log("rank 0 listening for \(args.nnodes - 1) rank(s) on :\(args.masterPort)")
        var joined: [Int32] = []
        while joined.count < args.nnodes - 1 {
            let fd = accept(listener, nil, nil)
            if fd >= 0 { joined.append(fd) }
        }
        return joined
    }

    static func listenTCP(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr = in_addr(s_addr: 0)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 || listen(fd, 64) != 0 {
            FileHandle.standardError.write(Data("OSError: [Errno 98] Address already in use (port \(port))\n".utf8))
            die(1)
        }
        return fd
    }

    static func connectTCP(_ host: String, _ port: Int) -> Int32? {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let ai = res else { return nil }
        defer { freeaddrinfo(res) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, 0)
        if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
        close(fd)
        return nil
    }

    static func serveHTTP(_ args: ServeArgs, state: EngineState) -> Never {
        let listener = listenTCP(port: args.port)
        log("Starting vLLM API server on http://\(args.host):\(args.port)")
        log("Application startup complete.")
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 { continue }
            Thread.detachNewThread { handle(fd, state: state) }
        }
    }

    static func handle(_ fd: Int32, state: EngineState) {
        defer { close(fd) }
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Range<Data.Index>?
        while headerEnd == nil {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { return }
            data.append(buf, count: n)
            headerEnd = data.range(of: Data("\r\n\r\n".utf8))
        }
        let head = String(decoding: data[..<headerEnd!.lowerBound], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let request = lines.removeFirst().split(separator: " ")
        guard request.count >= 2 else { return }
        var headers: [String: String] = [:]
        for l in lines { if let c = l.firstIndex(of: ":") { headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces) } }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        var body = Data(data[headerEnd!.upperBound...])
        while body.count < length {
            let n = read(fd, &buf, min(buf.count, length - body.count))
            if n <= 0 { return }
            body.append(buf, count: n)
        }
        let method = String(request[0]), path = String(request[1])
        let completion = method == "POST" && path.hasPrefix("/v1/")
        if completion { state.begin() }
        defer { if completion { state.end() } }
        let api = state.current()
        if api.faults.contains(.wedge), path.hasPrefix("/v1/chat") {
            // A wedged collective: the request is accepted and never answered.
            while true { sleep(3600) }
        }
        let r = api.handle(method: method, path: path, authorization: headers["authorization"], body: body)
        if api.rankLost, r.status == 500 {
            // The failed request killed the engine core; the API server's watchdog (every 5 s) stops the server
            // (entrypoints/launcher.py:170-192, VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=0), a normal uvicorn return.
            log("ERROR EngineCore encountered a fatal error. Engine dead; shutting down the API server")
            Thread.detachNewThread { Thread.sleep(forTimeInterval: 1); die(0) }
        }
        let reason = [200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"][r.status] ?? "OK"
        func send(_ text: String) -> Bool {
            let all = Array(text.utf8)
            var off = 0
            while off < all.count {
                let n = all[off...].withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count) }
                if n <= 0 { return false }
                off += n
            }
            return true
        }
        if r.contentType.hasPrefix("text/event-stream") {
            // A stream goes out as uvicorn sends a StreamingResponse: chunked, one chunk per event.
            guard send("HTTP/1.1 200 OK\r\ncontent-type: \(r.contentType)\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n") else { return }
            for event in r.body.components(separatedBy: "\n\n") where !event.isEmpty {
                let data = event + "\n\n"
                guard send(String(data.utf8.count, radix: 16) + "\r\n" + data + "\r\n") else { return }
            }
            _ = send("0\r\n\r\n")
            return
        }
        _ = send("HTTP/1.1 \(r.status) \(reason)\r\ncontent-type: \(r.contentType)\r\ncontent-length: \(r.body.utf8.count)\r\nconnection: close\r\n\r\n" + r.body)
    }
}
