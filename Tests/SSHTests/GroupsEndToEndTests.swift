import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import SousKit
import SousSim
import SousTestSupport

/// Steady client traffic through an endpoint on background threads: one request after another on each of
/// `workers` connections, each a short chat completion with the key, as an agent would send. Records every
/// answer's status and when it came.
final class LoadGenerator: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var results: [(at: Double, status: Int)] = []
    private let done = DispatchGroup()
    let started = Date()

    init(url: String, model: String, key: String, workers: Int = 2) {
        let body = try! JSONSerialization.data(withJSONObject: ["model": model, "max_tokens": 8, "messages": [["role": "user", "content": "Say hi."]]])
        let session = URLSession(configuration: .ephemeral)
        for _ in 0..<workers {
            done.enter()
            Thread.detachNewThread { [self] in
                defer { done.leave() }
                while !isStopped {
                    var request = URLRequest(url: URL(string: url + "/v1/chat/completions")!, timeoutInterval: 30)
                    request.httpMethod = "POST"
                    request.httpBody = body
                    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                    request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
                    let answered = DispatchSemaphore(value: 0)
                    let status = Box()
                    session.dataTask(with: request) { data, response, _ in
                        let code = (response as? HTTPURLResponse)?.statusCode ?? 0
                        // A 200 must carry a completion, not a cut or empty body.
                        let ok = code == 200 && (data.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }?["choices"] as? [Any])?.isEmpty == false
                        status.value = ok ? 200 : (code == 200 ? -1 : code)
                        answered.signal()
                    }.resume()
                    answered.wait()
                    record(status.value)
                }
            }
        }
    }

    final class Box: @unchecked Sendable { var value = 0 }
    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
    private func record(_ status: Int) {
        lock.lock(); results.append((Date().timeIntervalSince(started), status)); lock.unlock()
    }

    /// Stops, waits for the requests in flight; returns (sent, failed, longest time without a good answer).
    func stop() -> (sent: Int, failed: Int, longestGap: Double) {
        lock.lock(); stopped = true; lock.unlock()
        _ = done.wait(timeout: .now() + 60)
        lock.lock(); defer { lock.unlock() }
        let good = results.filter { $0.status == 200 }.map(\.at).sorted()
        let gaps = zip(good.dropFirst(), good).map { $0 - $1 }
        return (results.count, results.count - good.count, gaps.max() ?? 0)
    }
}

/// Two tensor-parallel groups on four simulated nodes behind vLLM's real router (vllm-router from PyPI, installed
/// by scripts/router-env): brought up and verified through the router, then rolled one group at a time under
/// steady traffic, with a good image and a bad one.
extension SimEndToEndTests {
    func fourNodesBehindTheRouter() throws -> Bool {
        _ = try sous(["sim", "down", "--dir", dir])
        let r = try sous(["sim", "up", "--dir", dir, "--nodes", "4", "--router", "--load-seconds", "0.4"])
        #expect(r.status == 0, "\(r.err)")
        return r.status == 0
    }

    @Test func twoGroupsBehindTheRouterRollOneAtATimeWithoutAFailedRequest() throws {
        guard try fourNodesBehindTheRouter() else { return }
        let recipe = repoPath("recipes/nemotron-3-super-nvfp4.yaml")
        let up = try sous(["up", "-r", recipe, "-i", inventory, "--json"])
        #expect(up.status == 0, "\(up.err)")
        let result = try #require(try? JSONSerialization.jsonObject(with: Data(up.out.utf8)) as? [String: Any], "\(up.out)\n\(up.err)")
        let router = try #require(result["router"] as? String)
        #expect(router == "http://10.213.0.11:8080")
        let groups = result["groups"] as? [[String: Any]] ?? []
        #expect(groups.map { $0["group"] as? String } == ["group-0", "group-1"])
        #expect(groups.allSatisfy { ($0["fingerprint"] as? String)?.contains("-tp2-") == true }, "\(groups)")
        let checks = result["checks"] as? [[String: Any]] ?? []
        #expect(checks.count == 10 && checks.allSatisfy { $0["passed"] as? Bool == true }, "through the router: \(checks)")
        // The real router holds both heads, and the requests it passes on reach both.
        let workers = try Local.run("/usr/bin/curl", ["-fsS", "--max-time", "10", router + "/list_workers"]).output
        #expect(workers.contains("http://10.213.0.11:8000") && workers.contains("http://10.213.0.13:8000"), "\(workers)")
        #expect(try exec("spark-1", "docker inspect --format '{{.HostConfig.RestartPolicy.Name}}' sous-router") == "spark-1: unless-stopped\n")
        #expect(try exec("spark-1", "docker inspect --format '{{json .Args}}' sous-router").contains("\"--worker-urls\",\"http://10.213.0.11:8000\",\"http://10.213.0.13:8000\""))

        let again = try sous(["up", "-r", recipe, "-i", inventory])
        #expect(again.status == 0, "\(again.err)")
        #expect(again.out.contains("ok      router ") && again.out.contains("group-1: verified") && again.out.contains("nothing restarted"), "\(again.out)")

        // A good image under steady traffic: each group leaves the router, rolls, is gated, comes back.
        let load = LoadGenerator(url: router, model: "nvidia/nemotron-3-super", key: key)
        let good = try sous(["roll", "-r", recipe, "-i", inventory, "--image", "vllm/vllm-openai:v0.25.0"])
        let goodLoad = load.stop()
        #expect(good.status == 0, "\(good.out)\(good.err)")
        for g in ["group-0", "group-1"] {
            #expect(good.out.contains("\(g): verified (vllm/vllm-openai:v0.24.0 → vllm/vllm-openai:v0.25.0), fingerprint vllm-0.24.0-tp2-"), "\(good.out)")
        }
        #expect(good.out.contains("changed group-0: out") && good.out.contains("changed group-0: in"), "\(good.out)")
        print("roll of 2 groups behind vllm-router, good image: \(goodLoad.sent) requests, \(goodLoad.failed) failed, longest gap \(String(format: "%.2f", goodLoad.longestGap)) s")
        #expect(goodLoad.sent > 20 && goodLoad.failed == 0, "\(goodLoad)")

        // A bad image: the first group fails, is rolled back and put back; the second is never touched.
        let load2 = LoadGenerator(url: router, model: "nvidia/nemotron-3-super", key: key)
        let bad = try sous(["roll", "-r", recipe, "-i", inventory, "--image", "vllm/vllm-openai:v0.28.0-sim-crash-on-start"])
        let badLoad = load2.stop()
        #expect(bad.status == 1, "\(bad.out)\(bad.err)")
        #expect(bad.out.contains("group-0: rolled back (vllm/vllm-openai:v0.25.0 → vllm/vllm-openai:v0.28.0-sim-crash-on-start)"), "\(bad.out)")
        #expect(bad.out.contains("untouched: group-1") && bad.out.contains("outcome: rolled back (1 of 2 groups rolled"), "\(bad.out)")
        for node in ["spark-1", "spark-2", "spark-3", "spark-4"] {
            #expect(try exec(node, "docker inspect --format '{{.Config.Image}}' sous-vllm") == "\(node): vllm/vllm-openai:v0.25.0\n")
        }
        print("roll of 2 groups behind vllm-router, bad image rolled back: \(badLoad.sent) requests, \(badLoad.failed) failed, longest gap \(String(format: "%.2f", badLoad.longestGap)) s")
        #expect(badLoad.sent > 20 && badLoad.failed == 0, "\(badLoad)")
        let after = try Local.run("/usr/bin/curl", ["-fsS", "--max-time", "10", router + "/list_workers"]).output
        #expect(after.contains("http://10.213.0.11:8000") && after.contains("http://10.213.0.13:8000"), "both groups back in the router: \(after)")
        // The journal keeps each group's outcome.
        let journal = try exec("spark-1", "tail -n 1 /var/lib/sous/journal.jsonl")
        #expect(journal.contains("\"group\":\"group-0\"") && journal.contains("\"outcome\":\"rolled back\""), "\(journal)")
    }
}
