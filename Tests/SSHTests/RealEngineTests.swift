import Foundation
import Testing
import SousKit
import SousSim
import SousTestSupport

/// The real-engine tier: the real vLLM CPU engine (scripts/engine-env) in the simulated nodes' containers, serving
/// the tiny agent model (scripts/make-tiny-agent) as two tensor-parallel ranks across the two nodes. scripts/test
/// installs both; without them this tier fails (set SOUS_SKIP_REAL_ENGINE=1 to leave it out on a machine that cannot
/// hold ~7 GB of engines).
extension SimEndToEndTests {
    static let engines = ["0.28.0", "0.30.0"]
    /// Registered in 0.28 and 0.30; without `thinking` in the request it passes everything to content, `<think>` included.
    static let wrongReasoningParser = "deepseek_v3"
    static var realEngineMissing: String? {
        for v in engines where !FileManager.default.fileExists(atPath: "/var/cache/sous/engines/vllm-\(v)/.sous-ok") {
            return "vLLM \(v) is not installed: bash scripts/engine-env"
        }
        if !FileManager.default.fileExists(atPath: SimHub.tinyAgentDir + "/.sous-ok") { return "the tiny agent model is not made: bash scripts/make-tiny-agent" }
        return nil
    }

    /// `sim up --engine vllm` in place of the modelled simulation this suite starts each test with.
    func realEngineSim() throws -> Bool {
        if ProcessInfo.processInfo.environment["SOUS_SKIP_REAL_ENGINE"] == "1" { return false }
        if let missing = Self.realEngineMissing { Issue.record("\(missing) (or SOUS_SKIP_REAL_ENGINE=1)"); return false }
        _ = try sous(["sim", "down", "--dir", dir])
        let r = try sous(["sim", "up", "--dir", dir, "--engine", "vllm"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("registry: 10.213.0.1:5000, 2 images of the vllm engine"), "\(r.out)")
        return r.status == 0
    }

    func upTiny(_ recipe: String = repoPath("recipes/tiny-agent.yaml"), _ extra: [String] = []) throws -> (out: String, err: String, status: Int32) {
        try sous(["up", "--recipe", recipe, "--inventory", inventory, "--timeout", "20m", "--check-timeout", "5m"] + extra)
    }

    /// Up to a verified tp2 on the real engine, the same deployment audited clean, then a roll to the next release.
    @Test func theRealEngineIsVerifiedAsTP2AndRolled() throws {
        guard try realEngineSim() else { return }
        let up = try upTiny(repoPath("recipes/tiny-agent.yaml"), ["--json"])
        #expect(up.status == 0, "\(up.err)")
        let result = try #require(try? JSONSerialization.jsonObject(with: Data(up.out.utf8)) as? [String: Any], "\(up.out)\n\(up.err)")
        let fingerprint = try #require(result["fingerprint"] as? String)
        #expect(fingerprint.hasPrefix("vllm-0.28.0-tp2-") && fingerprint.count == "vllm-0.28.0-tp2-".count + 8, "\(fingerprint)")
        let checks = result["checks"] as? [[String: Any]] ?? []
        #expect(checks.map { $0["name"] as? String ?? "" } == ["model list", "auth enforced", "fingerprint tp2", "tool call", "JSON arguments", "tool-result round trip",
                                                               "streamed tool call", "streamed round trip", "required tool call", "named tool call"])
        #expect(checks.allSatisfy { $0["passed"] as? Bool == true }, "\(checks.filter { $0["passed"] as? Bool != true })")
        // The gate's small session: two streamed turns that build on each other, four tools offered.
        let session = result["session"] as? [[String: Any]] ?? []
        #expect(session.count == 2 && session.allSatisfy { $0["passed"] as? Bool == true }, "\(session)")
        // Reasoning reached its field through the real parser, the call came from the real qwen3_coder parser.
        #expect(try exec("spark-1", "docker logs sous-vllm 2>&1 | grep -c 'non-default args' || true") != "spark-1: 0\n")

        let audit = try sous(["audit", "--recipe", repoPath("recipes/tiny-agent.yaml"), "--inventory", inventory])
        #expect(audit.status == 0, "\(audit.out)\(audit.err)")

        let roll = try sous(["roll", "--recipe", repoPath("recipes/tiny-agent.yaml"), "--inventory", inventory, "--image", "vllm/vllm-openai:v0.30.0", "--timeout", "20m"])
        #expect(roll.status == 0, "\(roll.out)\(roll.err)")
        #expect(roll.out.contains("vllm-0.28.0-tp2-") && roll.out.contains("vllm-0.30.0-tp2-"), "the fingerprint diff shows the real version change: \(roll.out)")
    }

    /// A reasoning parser that is not the model's: the real engine leaves the reasoning in content, and the gate says so.
    @Test func aWrongReasoningParserFailsTheGateOnTheRealEngine() throws {
        guard try realEngineSim() else { return }
        let wrong = dir + "/tiny-agent-wrong-parser.yaml"
        try String(contentsOfFile: repoPath("recipes/tiny-agent.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "reasoning: nemotron_v3", with: "reasoning: \(Self.wrongReasoningParser)")
            .write(toFile: wrong, atomically: true, encoding: .utf8)
        let up = try upTiny(wrong)
        #expect(up.status == 1, "\(up.out)\(up.err)")
        #expect(up.err.contains("failed  verify: tool call") || up.err.contains("verify: tool call"), "\(up.err)")
        #expect(up.err.contains("reasoning"), "the diagnosis names the reasoning parser: \(up.err)")
        // The streamed checks and the session fail on it too, read as a streaming client reads them.
        let validate = try sous(["validate", "--base-url", "http://10.213.0.11:8000/v1", "--model", "sous-sim/tiny-agent", "-r", wrong])
        #expect(validate.status == 1 && validate.out.contains("FAIL  streamed tool call"), "\(validate.out)")
        let session = try sous(["validate", "--base-url", "http://10.213.0.11:8000/v1", "--model", "sous-sim/tiny-agent", "--session", "--turns", "2", "--tools", "4"])
        #expect(session.status == 1 && session.out.contains("turn  1  FAIL"), "\(session.out)")
    }

    /// The same probes against the real engine and against the modelled one given the very arguments sous rendered:
    /// every difference is either gone from the model or listed here with the reason it stays.
    @Test func theModelledEngineAnswersAsTheRealOneDoes() async throws {
        guard try realEngineSim() else { return }
        let up = try upTiny()
        #expect(up.status == 0, "\(up.err)")
        let d = try Deployment.load(recipe: repoPath("recipes/tiny-agent.yaml"), inventory: inventory)
        let argv = try Renderer(d).nodes()[0].serveArgv
        let api = SimAPI(args: try ServeArgs.parse(argv), version: VLLMVersion(0, 28, 0), versionString: "0.28.0", joinedRanks: 2, apiKey: key, faults: [])
        let model = d.recipe.servedModelName
        let real = try await EngineProbes.shapes(URLSessionProbe(), base: d.inventory.baseURL, model: model, key: Secret(key))
        let modelled = try await EngineProbes.shapes(SimAPIProbe(api: api), base: d.inventory.baseURL, model: model, key: Secret(key))
        if let report = ProcessInfo.processInfo.environment["SOUS_PROBE_REPORT"] {
            try real.keys.sorted().map { "\($0)\n  real:     \(real[$0]!)\n  modelled: \(modelled[$0] ?? "-")" }.joined(separator: "\n")
                .write(toFile: report, atomically: true, encoding: .utf8)
        }
        #expect(real.count == 9 && Set(real.keys) == Set(modelled.keys))
        var differences: [String] = []
        for (probe, shape) in real.sorted(by: { $0.key < $1.key }) where modelled[probe] != shape && EngineProbes.kept[probe] == nil {
            differences.append("\(probe):\n  real:     \(shape)\n  modelled: \(modelled[probe] ?? "-")")
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
    }
}

/// The differential probe suite: each probe's answer reduced to its shape (status, content type, key sets, finish
/// reasons, the kinds of stream chunks in order), which two engines serving different words must still share.
enum EngineProbes {
    /// Differences that stay, and why.
    static let kept: [String: String] = [:]

    static func keys(_ o: Any?) -> String {
        guard let d = o as? [String: Any] else { return o == nil ? "-" : String(describing: type(of: o!)) }
        return "{" + d.keys.sorted().joined(separator: ",") + "}"
    }

    static func chat(_ probe: HTTPProbe, _ base: String, _ body: [String: Any], key: Secret?) async throws -> HTTPResponse {
        try await probe.post(base + "/v1/chat/completions", json: try JSONSerialization.data(withJSONObject: body), bearer: key, timeout: .seconds(300))
    }

    /// A non-streamed answer's shape: status, top-level keys, the error's keys or the message's keys and finish.
    static func shape(_ r: HTTPResponse) -> String {
        let json = try? JSONSerialization.jsonObject(with: r.body) as? [String: Any]
        if r.status != 200 { return "\(r.status) \(keys(json)) error \(keys(json?["error"]))" }
        let choice = (json?["choices"] as? [[String: Any]])?.first
        let message = choice?["message"] as? [String: Any]
        let calls = (message?["tool_calls"] as? [[String: Any]]) ?? []
        return "200 \(keys(json)) message \(keys(message)) calls \(calls.map { keys($0) + keys($0["function"]) }) finish \(choice?["finish_reason"] as? String ?? "nil")"
    }

    /// A stream's shape: its content type, then each chunk's kind (repeats collapsed), then [DONE].
    static func streamShape(_ r: HTTPResponse) -> String {
        var kinds: [String] = []
        for line in String(decoding: r.body, as: UTF8.self).split(separator: "\n") where line.hasPrefix("data: ") {
            let payload = line.dropFirst(6)
            var kind = "DONE"
            if payload != "[DONE]" {
                let chunk = (try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any]) ?? [:]
                let choice = (chunk["choices"] as? [[String: Any]])?.first
                let delta: [String: Any] = (choice?["delta"] as? [String: Any]) ?? [:]
                if choice == nil { kind = "usage" + keys(chunk) }
                else if let f = choice?["finish_reason"] as? String { kind = "finish(\(f))" + keys(chunk) }
                else if let calls = delta["tool_calls"] as? [[String: Any]], let c = calls.first { kind = "call" + keys(c) + keys(c["function"]) }
                else { kind = "delta" + keys(delta) }
            }
            if kinds.last != kind { kinds.append(kind) }
        }
        return "\(r.status) \(r.contentType ?? "-") " + kinds.joined(separator: " ")
    }

    static func shapes(_ probe: HTTPProbe, base: String, model: String, key: Secret) async throws -> [String: String] {
        var out: [String: String] = [:]
        let noKey = try await probe.get(base + "/v1/models", bearer: nil, timeout: .seconds(30))
        out["models without the key"] = "\(noKey.status) \(String(decoding: noKey.body, as: UTF8.self))"
        let models = try await probe.get(base + "/v1/models", bearer: key, timeout: .seconds(30))
        let card = ((try? JSONSerialization.jsonObject(with: models.body) as? [String: Any])?["data"] as? [[String: Any]])?.first
        out["models"] = "\(models.status) \(keys(card)) max_model_len \(card?["max_model_len"] as? Int ?? -1)"
        let tools = [AgentChecks.weatherTool]
        let ask: [[String: Any]] = [["role": "user", "content": AgentChecks.toolPrompt]]
        out["tool call"] = shape(try await chat(probe, base, ["model": model, "messages": ask, "tools": tools, "max_tokens": 1024, "temperature": 0], key: key))
        out["tool call without max_tokens"] = shape(try await chat(probe, base, ["model": model, "messages": ask, "tools": tools, "temperature": 0], key: key))
        out["required tool call"] = shape(try await chat(probe, base, ["model": model, "messages": ask, "tools": tools, "tool_choice": "required", "max_tokens": 1024, "temperature": 0], key: key))
        out["streamed tool call"] = streamShape(try await chat(probe, base, ["model": model, "messages": ask, "tools": tools, "max_tokens": 1024, "temperature": 0,
                                                                            "stream": true, "stream_options": ["include_usage": true]], key: key))
        out["streamed without usage"] = streamShape(try await chat(probe, base, ["model": model, "messages": ask, "tools": tools, "max_tokens": 1024, "temperature": 0, "stream": true], key: key))
        let unknown = try await chat(probe, base, ["model": "no/such-model", "messages": ask], key: key)
        out["unknown model"] = shape(unknown) + " " + (((try? JSONSerialization.jsonObject(with: unknown.body) as? [String: Any])?["error"] as? [String: Any])?["message"] as? String ?? "")
        out["stream_options without stream"] = shape(try await chat(probe, base, ["model": model, "messages": ask, "stream_options": ["include_usage": true]], key: key))
        return out
    }
}
