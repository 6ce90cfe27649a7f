import Foundation
import Testing
@testable import SousKit
@testable import SousSim

/// The live probe against real servers on loopback that misbehave: a trickle, an endless body, a redirect that
/// would take the key elsewhere; and a full check over IPv6.
@Suite struct HTTPProbeTests {
    /// Where the probe runs: the socket client (plain http, both families) and the URLSession path (https's),
    /// which FoundationNetworking can only take to 127.0.0.1.
    struct Case: Sendable, CustomTestStringConvertible {
        var host: String
        var transport: URLSessionProbe.Transport
        var testDescription: String { "\(host) over \(transport == .automatic ? "the socket" : "URLSession")" }

        func probe(maxBodyBytes: Int = URLSessionProbe.defaultMaxBodyBytes) -> URLSessionProbe {
            var p = URLSessionProbe(maxBodyBytes: maxBodyBytes)
            p.transport = transport
            return p
        }
    }

    static let cases = [Case(host: "127.0.0.1", transport: .automatic), Case(host: "::1", transport: .automatic),
                        Case(host: "127.0.0.1", transport: .urlSession)]
    static let key = Secret("sk-test-9f8e7d6c5b4a")

    /// The error the call throws, and how long it took.
    func failure(_ call: () async throws -> HTTPResponse) async -> (URLSessionProbe.Failure?, Duration) {
        let start = ContinuousClock.now
        do {
            let r = try await call()
            Issue.record("expected a failure, got HTTP \(r.status) with \(r.body.count) bytes")
            return (nil, ContinuousClock.now - start)
        } catch {
            #expect(error is URLSessionProbe.Failure, "\(error)")
            return (error as? URLSessionProbe.Failure, ContinuousClock.now - start)
        }
    }

    // 1. A hard deadline: a trickle of one byte every 200 ms used to keep an idle timeout of 1 s happy for the whole
    // minute it lasts. The bounds below are hang guards, far from the trickle's length and loose for a loaded machine;
    // the deadline itself is asserted by the error's text.

    @Test(arguments: cases) func aTrickleFailsAtTheDeadline(_ c: Case) async throws {
        let server = try LoopbackHTTPServer(host: c.host) { _ in .trickle(every: .milliseconds(200), bytes: 1500) }
        defer { server.stop() }
        let url = server.baseURL + "/v1/models"
        let (e, took) = await failure { try await c.probe().get(url, bearer: Self.key, timeout: .seconds(1)) }
        #expect(e?.kind == .timedOut)
        #expect(e?.description == "GET \(url): timed out after 1 s (the whole request, answer included)")
        #expect(took < .seconds(120), "took \(took)")

        let start = ContinuousClock.now
        let results = await Validator(probe: c.probe(), baseURL: server.baseURL + "/v1", model: "x", key: Self.key, timeout: .milliseconds(500)).run()
        #expect(results.map(\.name) == ["model list"])
        #expect(results.first?.detail == "GET \(url): timed out after 0.5 s (the whole request, answer included)")
        #expect(ContinuousClock.now - start < .seconds(120))
    }

    @Test(arguments: ["127.0.0.1", "::1"]) func watchCountsATricklingHealthAsAFailure(_ host: String) async throws {
        let server = try LoopbackHTTPServer(host: host) { _ in .trickle(every: .milliseconds(200), bytes: 1500) }
        defer { server.stop() }
        let port = try #require(Int(server.baseURL.split(separator: ":").last ?? ""))
        let dog = Watchdog(probe: URLSessionProbe(), host: host, port: port, model: "x", key: Self.key, interval: .milliseconds(100), failures: 1,
                           probeTimeout: .seconds(1), backoff: .milliseconds(100), log: { _ in }, recover: { 0 })
        let start = ContinuousClock.now
        let problem = await dog.check()
        #expect(problem == "/health failed: GET \(server.baseURL)/health: timed out after 1 s (the whole request, answer included)")
        #expect(ContinuousClock.now - start < .seconds(120), "a hang guard: the trickle lasts 300 s")

        // /health answers, the completion trickles: a wedged engine, within the probe timeout too.
        let wedged = try LoopbackHTTPServer(host: host) { r in
            r.path == "/health" ? .answer(status: 200, body: Data()) : .trickle(every: .milliseconds(200), bytes: 1500)
        }
        defer { wedged.stop() }
        let wedgedPort = try #require(Int(wedged.baseURL.split(separator: ":").last ?? ""))
        var dog2 = dog
        dog2.baseURL = Endpoint.baseURL(host: host, port: wedgedPort)
        let start2 = ContinuousClock.now
        #expect(await dog2.check() == "no completion within 1.0 seconds (/health is 200: a wedged engine)")
        #expect(ContinuousClock.now - start2 < .seconds(120), "a hang guard: the trickle lasts 300 s")
    }

    @Test func aCancelledRequestStopsAtOnce() async throws {
        let server = try LoopbackHTTPServer { _ in .silence }
        defer { server.stop() }
        let start = ContinuousClock.now
        let task = Task { try await URLSessionProbe().get(server.baseURL + "/health", bearer: nil, timeout: .seconds(600)) }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        // The error says cancellation ended it, not the deadline; the bound is a hang guard, not a timing.
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(ContinuousClock.now - start < .seconds(300))
    }

    // 2. A cap on the body: an endless answer used to be read into memory without end.

    @Test(arguments: cases) func anEndlessBodyIsCut(_ c: Case) async throws {
        let server = try LoopbackHTTPServer(host: c.host) { _ in .flood(bytes: 16 << 20) }
        defer { server.stop() }
        let url = server.baseURL + "/v1/chat/completions"
        // The deadline is far away, so only the cap can end this (the kind says which did); no timing asserted.
        let (e, _) = await failure { try await c.probe().post(url, json: Data("{}".utf8), bearer: Self.key, timeout: .seconds(120)) }
        #expect(e?.kind == .tooLarge)
        #expect(e?.description == "POST \(url): the answer is larger than 1 MiB, the most sous reads from an endpoint; stopped reading")
    }

    @Test(arguments: cases) func theCapIsAParameterAndHoldsForEveryFraming(_ c: Case) async throws {
        let server = try LoopbackHTTPServer(host: c.host) { r in
            let n = Int(r.path.split(separator: "/").last ?? "") ?? 0
            if r.path.hasPrefix("/length/") { return .answer(status: 200, body: Data(repeating: 0x61, count: n)) }
            if r.path.hasPrefix("/chunked/") { return .chunked(status: 200, body: Data(repeating: 0x62, count: n), chunk: 100) }
            if r.path.hasPrefix("/close/") { return .flood(bytes: n) }
            return .declare(length: n)
        }
        defer { server.stop() }
        let probe = c.probe(maxBodyBytes: 1000)
        for framing in ["length", "chunked", "close"] {
            let fits = try await probe.get(server.baseURL + "/\(framing)/1000", bearer: nil, timeout: .seconds(5))
            #expect(fits.status == 200 && fits.body.count == 1000, "\(framing)")
            let url = server.baseURL + "/\(framing)/1001"
            let (e, _) = await failure { try await probe.get(url, bearer: nil, timeout: .seconds(5)) }
            #expect(e?.description == "GET \(url): the answer is larger than 1000 bytes, the most sous reads from an endpoint; stopped reading", "\(framing)")
        }
        // A declared length over the cap fails at once, without waiting for the body.
        let url = server.baseURL + "/declared/\(10 << 30)"
        let (e, _) = await failure { try await probe.get(url, bearer: nil, timeout: .seconds(60)) }
        #expect(e?.kind == .tooLarge, "waiting for the body would end at the deadline instead")
    }

    // 3. Redirects are refused: a 302 to another port or host used to receive the Authorization header.

    @Test(arguments: cases) func aRedirectIsNotFollowedAndTheKeyStaysHome(_ c: Case) async throws {
        // Another port on 127.0.0.1 (which URLSession reaches too), another host from ::1.
        let elsewhere = try LoopbackHTTPServer(host: "127.0.0.1") { _ in .answer(status: 200, body: Data(#"{"data": []}"#.utf8)) }
        defer { elsewhere.stop() }
        let server = try LoopbackHTTPServer(host: c.host) { r in
            .redirect(status: r.method == "POST" ? 307 : 302, location: elsewhere.baseURL + r.path)
        }
        defer { server.stop() }
        let probe = c.probe()
        let models = server.baseURL + "/v1/models", chat = server.baseURL + "/v1/chat/completions"
        let (get, _) = await failure { try await probe.get(models, bearer: Self.key, timeout: .seconds(5)) }
        #expect(get?.kind == .redirected)
        #expect(get?.description == "GET \(models): the endpoint redirected (HTTP 302) to \(elsewhere.baseURL)/v1/models; sous does not follow redirects with the API key")
        let (post, _) = await failure { try await probe.post(chat, json: Data("{}".utf8), bearer: Self.key, timeout: .seconds(5)) }
        #expect(post?.description == "POST \(chat): the endpoint redirected (HTTP 307) to \(elsewhere.baseURL)/v1/chat/completions; sous does not follow redirects with the API key")

        let results = await Validator(probe: probe, baseURL: server.baseURL + "/v1", model: "x", key: Self.key, timeout: .seconds(5)).run()
        #expect(results.count == 1 && results[0].name == "model list" && !results[0].passed)
        #expect(results[0].detail == get?.description)
        #expect(results[0].diagnosis?.hasPrefix("a redirect") == true)

        #expect(elsewhere.requests.isEmpty, "the redirect's target was asked: \(elsewhere.requests.map { "\($0.method) \($0.path) \($0.headers)" })")
        #expect(!elsewhere.requests.contains { $0.headers["authorization"] != nil })
        // The endpoint asked for got the key, once per request; no message carries it.
        #expect(server.requests.count == 3)
        #expect(server.requests.allSatisfy { $0.headers["authorization"] == "Bearer \(Self.key.reveal())" })
        #expect(![get?.description, post?.description, results[0].detail, results[0].diagnosis].contains { $0?.contains(Self.key.reveal()) == true })
    }

    @Test func aRelativeOrHostileLocationIsReportedSafely() async throws {
        let server = try LoopbackHTTPServer { r in
            .redirect(status: 301, location: r.path == "/a" ? "/v1/" : "http://x/\u{1b}[2J\u{7}")
        }
        defer { server.stop() }
        let (relative, _) = await failure { try await URLSessionProbe().get(server.baseURL + "/a", bearer: nil, timeout: .seconds(5)) }
        #expect(relative?.description == "GET \(server.baseURL)/a: the endpoint redirected (HTTP 301) to \(server.baseURL)/v1/; sous does not follow redirects with the API key")
        let (hostile, _) = await failure { try await URLSessionProbe().get(server.baseURL + "/b", bearer: nil, timeout: .seconds(5)) }
        #expect(hostile?.description.contains("to http://x/%1B%5B2J%07; sous does not follow") == true, "\(hostile?.description ?? "")")
        let escaped = "a\\u{1b}[2J\\u{7}\\u{d}\\u{a}"
        #expect(URLSessionProbe.printable("a\u{1b}[2J\u{7}\r\n" + String(repeating: "b", count: 300)) == escaped + String(repeating: "b", count: 200 - escaped.count) + "…")
    }

    // 4. IPv6: base URLs with brackets, and a full check against a server on [::1].

    @Test func baseURLsBracketIPv6() async {
        #expect(Endpoint.baseURL(host: "::1", port: 8000) == "http://[::1]:8000")
        #expect(Endpoint.baseURL(host: "[::1]", port: 8000) == "http://[::1]:8000")
        #expect(Endpoint.baseURL(host: "fd00:1::11", port: 8000) == "http://[fd00:1::11]:8000")
        #expect(Endpoint.baseURL(host: "fe80::1%eth0", port: 8000) == "http://[fe80::1%25eth0]:8000")
        #expect(Endpoint.baseURL(host: "::ffff:10.0.0.1", port: 80) == "http://[::ffff:10.0.0.1]:80")
        #expect(Endpoint.baseURL(host: "10.213.0.11", port: 8000) == "http://10.213.0.11:8000")
        #expect(Endpoint.baseURL(host: "spark-a.lan", port: 8000) == "http://spark-a.lan:8000")
        #expect(Endpoint.url(host: "::1", port: 8000, path: "/v1/models") == "http://[::1]:8000/v1/models")
        // Not a host: kept escaped, so a request fails naming it rather than going elsewhere.
        #expect(Endpoint.baseURL(host: "a/b", port: 1) == "http://a%2Fb:1")
        // The URL the CLI used to build says what is wrong with it.
        let (e, _) = await failure { try await URLSessionProbe().get("http://::1:8000/v1/models", bearer: nil, timeout: .seconds(1)) }
        #expect(e?.description == "not an http:// or https:// URL: http://::1:8000/v1/models (an IPv6 address goes in brackets: http://[::1]:8000)")
    }

    @Test func aFullCheckOverIPv6() async throws {
        let api = SimAPI(args: try ServeArgs.parse(["serve", "m/x", "--served-model-name", "x", "--tensor-parallel-size", "2", "--nnodes", "2",
                                                    "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder", "--reasoning-parser", "nemotron_v3"]),
                         version: VLLMVersion(0, 24, 0), versionString: "0.24.0", joinedRanks: 2, apiKey: Self.key.reveal(), faults: [])
        let server = try LoopbackHTTPServer(host: "::1") { r in
            let a = api.handle(method: r.method, path: r.path, authorization: r.headers["authorization"], body: r.body)
            return .chunked(status: a.status, body: Data(a.body.utf8), chunk: 97, contentType: a.contentType)
        }
        defer { server.stop() }
        let port = try #require(Int(server.baseURL.split(separator: ":").last ?? ""))
        let probe = URLSessionProbe()

        let models = try await probe.get(Endpoint.url(host: "::1", port: port, path: "/v1/models"), bearer: Self.key, timeout: .seconds(5))
        #expect(models.status == 200 && models.text.contains(#""id":"x""#), "\(models.text)")
        let pingBody = AgentChecks.pingRequest(model: "x")
        let ping = try await probe.post(Endpoint.url(host: "::1", port: port, path: "/v1/chat/completions"), json: pingBody, bearer: Self.key, timeout: .seconds(5))
        #expect(ping.status == 200 && ping.json?["system_fingerprint"] != nil)
        let sent = try #require(server.requests.last)
        #expect(sent.method == "POST" && sent.headers["content-type"] == "application/json" && sent.body == pingBody)
        #expect(sent.headers["authorization"] == "Bearer \(Self.key.reveal())")

        let results = await Validator(probe: probe, baseURL: Endpoint.url(host: "::1", port: port, path: "/v1"), model: "x", key: Self.key,
                                      tensorParallel: 2, timeout: .seconds(10)).run()
        #expect(results.map(\.name) == ["model list", "auth enforced", "fingerprint tp2", "tool call", "JSON arguments", "tool-result round trip",
                                         "streamed tool call", "streamed round trip"])
        #expect(results.filter { !$0.passed }.isEmpty, "\(results.filter { !$0.passed })")

        // A zone id reaches the resolver (glibc takes only a numeric one for ::1; a name for fe80::/10).
        for host in ["::1", "[::1]", "::1%\(if_nametoindex("lo"))"] {
            let dog = Watchdog(probe: probe, host: host, port: port, model: "x", key: Self.key, interval: .milliseconds(100), failures: 1,
                               probeTimeout: .seconds(5), backoff: .milliseconds(100), log: { _ in }, recover: { 0 })
            let problem = await dog.check()
            #expect(problem == nil, "\(host): \(problem ?? "")")
        }
    }

    @Test(arguments: cases) func anAnswerSplitAtEveryByteIsReadWhole(_ c: Case) async throws {
        // No trailer for URLSession: a chunked answer with a trailer field crashes FoundationNetworking (swift 6.3.1:
        // "Transfer completed, but there's no response"), which only https still goes through.
        let trailer = c.transport == .automatic ? "X-Trailer: t\r\n" : ""
        let answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n7\r\n, world\r\n0\r\n\(trailer)\r\n"
        let server = try LoopbackHTTPServer(host: c.host) { r in
            r.path == "/ssh" ? .raw(Data("SSH-2.0-OpenSSH_9.6\r\n".utf8), pace: .zero) : .raw(Data(answer.utf8), pace: .milliseconds(1))
        }
        defer { server.stop() }
        let r = try await c.probe().get(server.baseURL + "/v1/models", bearer: nil, timeout: .seconds(10))
        #expect(r == HTTPResponse(status: 200, "hello, world"))
        if c.transport == .automatic {
            let (e, _) = await failure { try await c.probe().get(server.baseURL + "/ssh", bearer: nil, timeout: .seconds(5)) }
            #expect(e?.kind == .badAnswer)
            #expect(e?.description == "GET \(server.baseURL)/ssh: the server closed the connection inside the headers")
        }
    }

    @Test(arguments: ["127.0.0.1", "::1"]) func aClosedPortIsConnectionRefused(_ host: String) async throws {
        // A port just freed: nothing listens there.
        let server = try LoopbackHTTPServer(host: host) { _ in .silence }
        let url = server.baseURL + "/v1/models"
        server.stop()
        try await Task.sleep(for: .milliseconds(100))
        let (e, _) = await failure { try await URLSessionProbe().get(url, bearer: Self.key, timeout: .seconds(5)) }
        #expect(e?.description == "GET \(url): connection refused")
        #expect(e?.kind == .unreachable)
    }
}
