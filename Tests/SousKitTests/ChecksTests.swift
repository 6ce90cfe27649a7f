import Foundation
import Testing
@testable import SousKit
@testable import SousSim

/// The agent checks as pure verdicts, fed by the simulated engine's answers and by hand-written ones.
@Suite struct ChecksTests {
    func api(_ faults: Set<SimFault> = [], version: VLLMVersion = VLLMVersion(0, 24, 0), reasoning: String? = "nemotron_v3", autoTool: Bool = true) throws -> SimAPI {
        var argv = ["serve", "m/x", "--served-model-name", "x", "--tensor-parallel-size", "2", "--nnodes", "2",
                    "--tool-call-parser", "qwen3_coder"]
        if autoTool { argv.append("--enable-auto-tool-choice") }
        if let reasoning { argv += ["--reasoning-parser", reasoning] }
        return SimAPI(args: try ServeArgs.parse(argv), version: version, versionString: version.description, joinedRanks: 2, apiKey: "k", faults: faults)
    }

    func chat(_ api: SimAPI, _ body: Data) -> HTTPResponse {
        let r = api.handle(method: "POST", path: "/v1/chat/completions", authorization: "Bearer k", body: body)
        return HTTPResponse(status: r.status, r.body)
    }

    let call = AgentChecks.toolCallRequest(model: "x", sampling: [("temperature", 1.0)])

    @Test func healthyEnginePassesEveryCheck() throws {
        let a = try api()
        let models = a.handle(method: "GET", path: "/v1/models", authorization: "Bearer k", body: Data())
        #expect(AgentChecks.modelList(HTTPResponse(status: models.status, models.body), model: "x") ==
                CheckResult(name: "model list", passed: true, detail: "serves `x` (max_model_len 8192)"))
        let noKey = a.handle(method: "GET", path: "/v1/models", authorization: nil, body: Data())
        #expect(noKey == SimAPI.Response(status: 401, body: #"{"error":"Unauthorized"}"#))
        let r = chat(a, call)
        #expect(AgentChecks.toolCall(r).passed)
        #expect(AgentChecks.jsonArguments(r) == CheckResult(name: "JSON arguments", passed: true, detail: #"{"location": "Zurich"}"#))
        let fp = AgentChecks.fingerprint(r, tensorParallel: 2)
        #expect(fp.passed && fp.detail.hasPrefix("vllm-0.24.0-tp2-") && fp.detail.count == "vllm-0.24.0-tp2-".count + 8)
        let id = try #require(AgentChecks.toolCallID(r))
        #expect(id.hasPrefix("chatcmpl-tool-"))
        let rt = chat(a, AgentChecks.roundTripRequest(model: "x", sampling: [], toolCallID: id))
        #expect(AgentChecks.roundTrip(rt) == CheckResult(name: "tool-result round trip", passed: true, detail: "finish_reason stop: It is 12°C and cloudy in Zurich right now."))
    }

    @Test func wrongModelNameIsDiagnosed() throws {
        let models = try api().handle(method: "GET", path: "/v1/models", authorization: "Bearer k", body: Data())
        #expect(AgentChecks.modelList(HTTPResponse(status: models.status, models.body), model: "nvidia/other") ==
                CheckResult(name: "model list", passed: false, detail: "serves `x`, not `nvidia/other`",
                            diagnosis: "the client's model key must equal --served-model-name exactly; use `x` or fix served_model_name in the recipe"))
    }

    @Test func unauthorizedIsDiagnosedAsTheSeedSays() {
        let r = AgentChecks.modelList(HTTPResponse(status: 401, #"{"error":"Unauthorized"}"#), model: "x")
        #expect(!r.passed)
        #expect(r.diagnosis!.hasPrefix("401: the Authorization header is missing or wrong"))
    }

    /// vLLM answers tools it cannot parse with a 400 (renderers/online_renderer.py v0.28.0:145-173), not with prose.
    @Test func toolParserNotEnabledIsA400ThatNamesBothFlags() throws {
        let r = chat(try api(autoTool: false), call)
        #expect(r.status == 400)
        #expect(r.json?["error"] as? [String: Any] != nil, "errors are nested: \(r.text)")
        #expect(AgentChecks.toolCall(r).diagnosis == "the engine was started without --enable-auto-tool-choice and --tool-call-parser (both are needed); check the recipe's parsers.tool_call and the startup log")
    }

    /// The rule runs one way: auto tool choice needs a parser (cli_args.py v0.28.0:422-423); a parser alone starts.
    @Test func autoToolChoiceNeedsAParserNotTheOtherWayRound() throws {
        let auto = try ServeArgs.parse(["serve", "m", "--enable-auto-tool-choice"])
        #expect(auto.startupError(version: VLLMVersion(0, 28, 0)) == "TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser")
        let parserOnly = try ServeArgs.parse(["serve", "m", "--tool-call-parser", "no_such_parser"])
        #expect(parserOnly.startupError(version: VLLMVersion(0, 28, 0)) == nil)
        let misspelt = try ServeArgs.parse(["serve", "m", "--enable-auto-tool-choice", "--tool-call-parser", "no_such_parser"])
        #expect(misspelt.startupError(version: VLLMVersion(0, 28, 0))?.hasPrefix("KeyError: 'invalid tool call parser: no_such_parser (chose from {") == true)
    }

    @Test func wrongParserLeaksReasoning() throws {
        let r = chat(try api([.wrongParser]), call)
        #expect(AgentChecks.toolCall(r).diagnosis == "reasoning text is in content and the call is prose: the reasoning and tool parsers are not the model's; use the recipe's --reasoning-parser and --tool-call-parser")
    }

    @Test func smallBudgetEndsInLength() throws {
        let r = chat(try api(), AgentChecks.toolCallRequest(model: "x", sampling: [], maxTokens: 64))
        #expect(AgentChecks.toolCall(r) == CheckResult(name: "tool call", passed: false, detail: "finish_reason length before any tool call",
                                                      diagnosis: "reasoning ate the output budget: raise max_tokens (2048–4096) and the client's output limit"))
    }

    @Test func malformedArguments() throws {
        let r = chat(try api([.malformedArguments]), call)
        #expect(AgentChecks.toolCall(r).passed)
        let j = AgentChecks.jsonArguments(r)
        #expect(!j.passed && j.detail.hasPrefix("not parseable JSON: "))
    }

    @Test func toolCalledAgainAfterTheResult() {
        let body = #"{"choices":[{"finish_reason":"tool_calls","message":{"content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}}]}"#
        #expect(AgentChecks.roundTrip(HTTPResponse(status: 200, body)) == CheckResult(name: "tool-result round trip", passed: false, detail: "called get_weather again",
                diagnosis: "the tool-result turn is not consumed (an agent would repeat the action): check that tool_call_id is echoed and the chat template handles role tool"))
    }

    @Test func fingerprintByVersionAndTopology() throws {
        #expect(try chat(api(version: VLLMVersion(0, 20, 1)), call).json?["system_fingerprint"] is NSNull)
        var one = try api()
        one.joinedRanks = 1
        let fp = AgentChecks.fingerprint(chat(one, call), tensorParallel: 2)
        #expect(!fp.passed)
        #expect(fp.diagnosis == "the engine is not serving with tensor parallel 2: a node may have fallen back or not joined")
    }

    @Test func reasoningFieldRenamedIn017() throws {
        let old = chat(try api(version: VLLMVersion(0, 11, 0)), call)
        let message = (old.json?["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
        #expect(message?["reasoning_content"] is String)
        #expect(message?["reasoning"] == nil)
    }

    @Test func engineDeadAnswers503() throws {
        #expect(try api([.engineDead]).handle(method: "GET", path: "/health", authorization: nil, body: Data()).status == 503)
    }

    @Test func serveArgsRejectUnknownFlagsAndCheckParsers() throws {
        #expect(throws: ServeArgs.Unrecognized(arguments: ["--frobnicate 3"])) { try ServeArgs.parse(["serve", "m", "--frobnicate", "3"]) }
        let a = try ServeArgs.parse(["serve", "m", "--tool-call-parser", "qwen3_coder", "--enable-auto-tool-choice", "--reasoning-parser", "nemotron_v3"])
        #expect(a.startupError(version: VLLMVersion(0, 24, 0)) == nil)
        #expect(a.startupError(version: VLLMVersion(0, 11, 0))?.hasPrefix("KeyError: \"Reasoning parser 'nemotron_v3' not found. Available parsers: [") == true)
    }

    @Test func everyShippedRenderParsesInTheSimulatedEngine() throws {
        for f in shippedFiles("recipes") {
            let d = try Deployment.load(recipe: "recipes/\(f)", inventory: "inventory/two-sparks.yaml", relativeTo: repoRoot)
            for node in try Renderer(d).nodes() {
                let args = try ServeArgs.parse(node.serveArgv)
                #expect(args.servedName == d.recipe.servedModelName)
                #expect(args.startupError(version: d.inventory.vllmVersion!) == nil, "\(f)")
            }
            let yaml = Renderer(d).configYAML()
            let node = try Renderer(d).nodes(form: .config)[1]
            let args = try ServeArgs.parse(node.serveArgv) { _ in yaml }
            #expect(args.model == d.recipe.model && args.headless && args.nodeRank == 1 && args.tensorParallelSize == 2)
        }
    }

    @Test func sha256KnownVectors() {
        #expect(sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(sha256Hex(String(repeating: "a", count: 1000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}
