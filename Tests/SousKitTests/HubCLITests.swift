import Foundation
import Testing
@testable import SousKit
import SousSim
import SousTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The real `hf` CLI of each huggingface_hub generation (scripts/hf-env: /var/cache/sous/hf/<version>) against the
/// simulated hub's HTTP server on loopback (127.0.0.1, its CDN on 127.0.0.2, random ports). What each generation
/// prints for a failure is kept in Fixtures/hf/<version>/<case>.txt, taken from these runs
/// (`SOUS_UPDATE_FIXTURES=1 swift test --filter HubCLITests` rewrites them), and sous's classifier is checked
/// against those texts.
@Suite(.serialized) final class HubCLITests {
    let dir: String
    let hub: String
    let server: SimHubServer
    /// The commit of sim-org/tiny-fp8-modelopt and of org/big, as the hub computes them.
    var commits: [String: String] = [:]

    init() throws {
        dir = NSTemporaryDirectory() + "sous-hubcli-\(UUID().uuidString.prefix(8))"
        hub = dir + "/hub"
        try FileManager.default.createDirectory(atPath: hub, withIntermediateDirectories: true)
        for repo in SimHub.repos where repo.model.hasPrefix("sim-org/") || repo.model.hasPrefix("nvidia/") {
            try SimHub.write(repo, to: hub, shardBytes: 1 << 20)
        }
        // One 25 MB shard: the CLIs write in 10 MiB chunks (constants.DOWNLOAD_CHUNK_SIZE), so a killed download
        // leaves a partial file with bytes in it.
        try SimHub.write(SimHub.Repo(model: "org/big", config: SimHub.tinyConfig, totalSize: 25_000_000), to: hub, shards: 1, shardBytes: 25_000_000)
        try "hf_good_token\n".write(toFile: hub + "/.tokens", atomically: true, encoding: .utf8)
        try "hf_no_access_token\n".write(toFile: hub + "/.tokens-noaccess", atomically: true, encoding: .utf8)
        server = try SimHubServer(hub: hub, host: "127.0.0.1")
        server.start()
        for id in ["sim-org/tiny-fp8-modelopt", "org/big", "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4"] { commits[id] = try meta(id)["revision"] as? String }
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func meta(_ id: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(hub)/\(id)/.sim-repo.json"))) as! [String: Any]
    }

    static func hf(_ version: String) throws -> String {
        do { return try SimHubServer.cli(version) } catch let e as UsageError {
            throw HarnessError("\(e.message): run `bash scripts/hf-env` (scripts/install-deps does)")
        }
    }

    func environment(cache: String, token: String?) -> [String] {
        var env = ["PATH=/usr/bin:/bin", "HOME=\(dir)/home", "HF_ENDPOINT=\(server.endpoint)"] + HFDownload.environment
        if let token { env.append("HF_TOKEN=\(token)") }
        return env
    }

    /// Runs `hf download ARGS --cache-dir CACHE`; exit status and the combined output.
    func download(_ version: String, _ args: [String], cache: String, token: String? = nil) throws -> (status: Int32, output: String) {
        let out = dir + "/out-\(UUID().uuidString.prefix(6))"
        let pid = try Local.spawn(try Self.hf(version), args + ["--cache-dir", cache], env: environment(cache: cache, token: token), output: out)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : -1, text)
    }

    func requests() -> [String] {
        ((try? String(contentsOfFile: hub + "/.requests.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// The snapshot's files and sizes, through the links.
    func snapshot(_ cache: String, _ id: String) throws -> [String: Int] {
        let dir = "\(cache)/models--\(id.replacingOccurrences(of: "/", with: "--"))/snapshots/\(commits[id]!)"
        var out: [String: Int] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            let target = URL(fileURLWithPath: "\(dir)/\(name)").resolvingSymlinksInPath().path
            out[name] = (try FileManager.default.attributesOfItem(atPath: target)[.size] as? Int) ?? -1
        }
        return out
    }

    func hubFiles(_ id: String) throws -> [String: Int] {
        Dictionary(uniqueKeysWithValues: (try meta(id)["files"] as! [[String: Any]]).map { ($0["name"] as! String, $0["size"] as! Int) })
    }

    @Test(arguments: SimHubServer.generations)
    func aCompleteSnapshotInTheRealCacheLayout(_ version: String) throws {
        let id = "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4", cache = dir + "/c-\(version)"
        let r = try download(version, ["download", id], cache: cache)
        #expect(r.status == 0, "\(r.output)")
        #expect(try snapshot(cache, id) == (try hubFiles(id)))
        let repo = "\(cache)/models--nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4"
        #expect(try String(contentsOfFile: repo + "/refs/main", encoding: .utf8) == commits[id])
        // Blobs named as the hub names them: the shards by the sha256 the CDN redirect declared, the rest by git sha1.
        let files = try meta(id)["files"] as! [[String: Any]]
        let blobs = Set(try FileManager.default.contentsOfDirectory(atPath: repo + "/blobs"))
        #expect(blobs == Set(files.map { ($0["sha256"] as? String) ?? $0["oid"] as! String }))
        // sous's own check reads it as complete, with the quantization vLLM will pick.
        let config = try String(contentsOfFile: repo + "/snapshots/\(commits[id]!)/config.json", encoding: .utf8)
        #expect(config.contains("\"quant_algo\": \"MIXED_PRECISION\""))
        // The shards came from the CDN host after a 302 from resolve; nothing else was redirected.
        let log = requests()
        #expect(log.contains { $0.contains(" /nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4/resolve/") && $0.contains(".safetensors 302 ") })
        #expect(log.filter { $0.contains("GET /cdn/") && $0.contains(" 200 ") }.count >= 3)
    }

    /// sous's metadata step (`HFDownload.metadataFiles` as positional names) brings config.json and the index in
    /// every generation; `--include` given once per pattern does not in 0.36.x (argparse keeps the last).
    @Test(arguments: SimHubServer.generations)
    func theMetadataStepBringsConfigAndIndex(_ version: String) throws {
        let id = "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4"
        let cache = dir + "/m-\(version)"
        let r = try download(version, HFDownload.arguments(model: id, revision: nil, files: HFDownload.metadataFiles), cache: cache)
        #expect(r.status == 0, "\(r.output)")
        #expect(Set(try snapshot(cache, id).keys) == ["config.json", "model.safetensors.index.json", "hf_quant_config.json"])
        let repeated = dir + "/i-\(version)"
        let i = try download(version, ["download", "sim-org/tiny-fp8-modelopt", "--include", "config.json", "--include", "model.safetensors.index.json"], cache: repeated)
        #expect(i.status == 0, "\(i.output)")
        let got = (try? snapshot(repeated, "sim-org/tiny-fp8-modelopt").keys.sorted()) ?? []
        #expect(got == (version.hasPrefix("0.") ? ["model.safetensors.index.json"] : ["config.json", "model.safetensors.index.json"]))
    }

    /// A download killed part way (SIGKILL, as a reboot or the OOM killer): the next run completes it. 0.36.x
    /// resumes the partial file with a Range request; ≥ 1.x starts the file over under a new name and leaves the
    /// killed run's partial file (which sous removes before it starts a download: HFCacheOps.withoutStalePartials).
    @Test(arguments: SimHubServer.generations)
    func aKilledDownloadCompletesOnTheNextRun(_ version: String) throws {
        let cache = dir + "/k-\(version)", blobs = "\(cache)/models--org--big/blobs"
        try "10000000\n".write(toFile: hub + "/.rate", atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: hub + "/.rate") }
        let pid = try Local.spawn(try Self.hf(version), ["download", "org/big", "--cache-dir", cache], env: environment(cache: cache, token: nil), output: dir + "/k.log")
        // Killed once the first 10 MiB chunk is on disk (bounded: 25 MB at 10 MB/s takes 2.5 s).
        var partial: (name: String, size: Int)?
        for _ in 0..<300 where partial == nil {
            usleep(20_000)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: blobs)) ?? [] where name.hasSuffix(".incomplete") {
                let size = (try? FileManager.default.attributesOfItem(atPath: "\(blobs)/\(name)")[.size] as? Int) ?? 0
                if size >= 10 << 20 { partial = (name, size) }
            }
        }
        kill(pid, SIGKILL)
        var st: Int32 = 0
        waitpid(pid, &st, 0)
        let cut = try #require(partial, "no partial file appeared: \((try? String(contentsOfFile: dir + "/k.log", encoding: .utf8)) ?? "")")
        try? FileManager.default.removeItem(atPath: hub + "/.rate")
        let before = requests().count
        let r = try download(version, ["download", "org/big"], cache: cache)
        #expect(r.status == 0, "\(r.output)")
        #expect(try snapshot(cache, "org/big") == (try hubFiles("org/big")))
        // (The killed run's own request is logged when the server sees the connection drop: " -1 " bytes.)
        let cdn = requests().dropFirst(before).filter { $0.contains("GET /cdn/") && !$0.contains(" -1 ") }
        let left = try FileManager.default.contentsOfDirectory(atPath: blobs).filter { $0.hasSuffix(".incomplete") }
        if version.hasPrefix("0.") {
            #expect(cut.name.split(separator: ".").count == 2)
            #expect(cdn.count == 1 && cdn[0].contains(" 206 ") && cdn[0].hasSuffix(" bytes=\(cut.size)-"), "\(cdn)")
            #expect(left.isEmpty)
        } else {
            #expect(cdn.count == 1 && cdn[0].contains(" 200 25000128 -"), "\(cdn)")
            #expect(left == [cut.name])
            // What sous runs before a fresh download removes exactly that file.
            let clean = HFCacheOps.withoutStalePartials(blobs, then: ["true"])
            #expect(try Local.run("/bin/sh", Array(clean.dropFirst())).status == 0)
            #expect(try FileManager.default.contentsOfDirectory(atPath: blobs).filter { $0.hasSuffix(".incomplete") }.isEmpty)
        }
    }

    /// A connection that breaks part way: ≥ 1.x resumes in the same run with a Range request; 0.36.x exits 1 and
    /// keeps the partial file, which its next run resumes.
    @Test(arguments: SimHubServer.generations)
    func aBrokenConnectionIsResumed(_ version: String) throws {
        let cache = dir + "/b-\(version)"
        try "12000000\n".write(toFile: hub + "/.drop-after", atomically: true, encoding: .utf8)
        let before = requests().count
        var r = try download(version, ["download", "org/big"], cache: cache)
        if version.hasPrefix("0.") {
            #expect(r.status == 1 && HFDownload.failure(r.output) == .other, "\(r.output)")
            r = try download(version, ["download", "org/big"], cache: cache)
        }
        #expect(r.status == 0, "\(r.output)")
        #expect(try snapshot(cache, "org/big") == (try hubFiles("org/big")))
        let cdn = requests().dropFirst(before).filter { $0.contains("GET /cdn/") }
        #expect(cdn.count == 2 && cdn[1].contains(" 206 ") && cdn[1].hasSuffix(" bytes=10485760-"), "\(cdn)")
    }

    static let failureCases: [(name: String, repo: String, args: [String], token: String?, kind: HFDownload.Failure)] = [
        ("gated-no-token", "sim-org/tiny-gated", [], nil, .gated),
        ("gated-no-access", "sim-org/tiny-gated", [], "hf_no_access_token", .gated),
        ("gated-bad-token", "sim-org/tiny-gated", [], "hf_not_a_token", .invalidToken),
        ("missing-repo", "sim-org/no-such-model", [], nil, .repoNotFound),
        ("bad-revision", "sim-org/tiny-fp8-modelopt", ["--revision", "no-such-branch"], nil, .revisionNotFound),
        ("bad-commit", "sim-org/tiny-fp8-modelopt", ["--revision", String(repeating: "0", count: 40)], nil, .revisionNotFound),
    ]

    static func fixture(_ version: String, _ name: String) -> String { repoPath("Tests/SousKitTests/Fixtures/hf/\(version)/\(name).txt") }

    /// What each generation prints for each failure: exit 1, the text kept in Fixtures (ports and paths replaced),
    /// and the kind sous reads from it.
    @Test(arguments: SimHubServer.generations)
    func failuresAreTheRecordedTexts(_ version: String) throws {
        for c in Self.failureCases {
            let cache = dir + "/f-\(version)-\(c.name)"
            let r = try download(version, ["download", c.repo] + c.args, cache: cache, token: c.token)
            #expect(r.status == 1, "\(c.name): \(r.output)")
            #expect(HFDownload.failure(r.output) == c.kind, "\(version) \(c.name): \(r.output)")
            let text = HFDownload.plain(r.output)
                .replacingOccurrences(of: server.endpoint, with: "http://HUB")
                .replacingOccurrences(of: "http://\(server.cdnHost):\(server.cdnPort)", with: "http://CDN")
                .replacingOccurrences(of: cache, with: "CACHE")
                .replacingOccurrences(of: commits["sim-org/tiny-fp8-modelopt"]!, with: "COMMIT")
                .replacingOccurrences(of: (try meta("sim-org/tiny-gated"))["revision"] as! String, with: "COMMIT")
                // 0.x prints a traceback through concurrent.futures, whose frame depends on whether the worker's
                // future was already done when it was waited for.
                .replacingOccurrences(of: #"(concurrent/futures/_base\.py", line )\d+"#, with: "$1N", options: .regularExpression)
            let path = Self.fixture(version, c.name)
            if ProcessInfo.processInfo.environment["SOUS_UPDATE_FIXTURES"] == "1" {
                try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try text.write(toFile: path, atomically: true, encoding: .utf8)
            }
            #expect(text == (try String(contentsOfFile: path, encoding: .utf8)), "\(version) \(c.name) differs from \(path)")
        }
    }

    /// The recorded texts, read without running anything: each generation's failure is recognised, and the
    /// texts the ≥ 1.4 CLIs print are not the 0.x markers the first classifier looked for.
    @Test func theRecordedTextsAreClassified() throws {
        for version in SimHubServer.generations {
            for c in Self.failureCases {
                let text = try String(contentsOfFile: Self.fixture(version, c.name), encoding: .utf8)
                #expect(HFDownload.failure(text) == c.kind, "\(version) \(c.name)")
                if !version.hasPrefix("0.") && c.kind != .invalidToken {
                    #expect(!text.contains("Repository Not Found") && !text.contains("Revision Not Found") && !text.contains("gated repo"), "\(version) \(c.name)")
                }
            }
        }
        #expect(HFDownload.failure("Fetching 9 files: 100%\n/snapshots/abc\n") == .other)
        #expect(HFDownload.failure("requests.exceptions.ChunkedEncodingError: ('Connection broken: IncompleteRead(12000000 bytes read)')") == .other)
    }
}
