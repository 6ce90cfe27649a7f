import Foundation
import Testing
@testable import SousKit
@testable import SousSim
import SousTestSupport

/// The streamed checks, read the way an OpenAI SDK client reassembles a stream, against the modelled engine's
/// streams and against hand-written streams that carry the faults seen in the field.
@Suite struct StreamingTests {
    func api(_ faults: Set<SimFault> = [], version: VLLMVersion = VLLMVersion(0, 28, 0)) throws -> SimAPI {
        let argv = ["serve", "m/x", "--served-model-name", "x", "--tensor-parallel-size", "2", "--nnodes", "2",
                    "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder", "--reasoning-parser", "nemotron_v3"]
        return SimAPI(args: try ServeArgs.parse(argv), version: version, versionString: version.description, joinedRanks: 2, apiKey: "k", faults: faults)
    }

    func post(_ api: SimAPI, _ body: Data) -> HTTPResponse {
        SimAPIProbe.answer(api.handle(method: "POST", path: "/v1/chat/completions", authorization: "Bearer k", body: body))
    }

    let call = AgentChecks.streamed(AgentChecks.toolCallRequest(model: "x", sampling: []), stream: true)

    /// An SSE body from chunks given as the `delta` (and finish reason) of choice 0.
    func stream(_ deltas: [([String: Any], String?)], usage: Bool = true, done: Bool = true) -> HTTPResponse {
        var text = ""
        for (d, finish) in deltas {
            let chunk: [String: Any] = ["id": "c", "object": "chat.completion.chunk", "choices": [["index": 0, "delta": d, "finish_reason": finish.map { $0 as Any } ?? NSNull()]]]
            text += "data: " + String(decoding: try! JSONSerialization.data(withJSONObject: chunk), as: UTF8.self) + "\n\n"
        }
        if usage { text += #"data: {"choices":[],"usage":{"prompt_tokens":5,"total_tokens":8,"completion_tokens":3}}"# + "\n\n" }
        if done { text += "data: [DONE]\n\n" }
        return HTTPResponse(status: 200, body: Data(text.utf8), contentType: "text/event-stream; charset=utf-8")
    }

    func callDelta(id: String? = nil, name: String? = nil, arguments: String? = nil, index: Int = 0) -> ([String: Any], String?) {
        var function: [String: Any] = [:]
        if let name { function["name"] = name }
        if let arguments { function["arguments"] = arguments }
        var c: [String: Any] = ["index": index, "function": function]
        if let id { c["id"] = id; c["type"] = "function" }
        return (["content": NSNull(), "tool_calls": [c]], nil)
    }

    let good: [([String: Any], String?)] = [
        (["role": "assistant", "content": ""], nil),
        (["reasoning": "The user wants "], nil), (["reasoning": "the weather."], nil),
    ]

    @Test func theModelledEngineStreamsAsVLLMDoes() throws {
        let r = post(try api(), call)
        #expect(r.contentType == "text/event-stream; charset=utf-8")
        let text = r.text
        #expect(text.hasPrefix(#"data: {"choices":[{"delta":{"content":"","role":"assistant"}"#), "\(text.prefix(200))")
        #expect(text.hasSuffix("data: [DONE]\n\n"))
        let s = StreamedChat.parse(r.body)
        #expect(s.done && s.problems.isEmpty && s.content.isEmpty)
        #expect(s.reasoning == "The user wants the weather; I need to call get_weather with the city they named.")
        #expect(s.orderedCalls.count == 1 && s.orderedCalls[0].name == "get_weather" && s.orderedCalls[0].arguments == #"{"location": "Zurich"}"#)
        #expect(s.finishReason == "tool_calls" && s.completionTokens == 180)
        // The fingerprint rides on the last chunk only (serving.py v0.28.0:799-846).
        #expect(s.fingerprint?.hasPrefix("vllm-0.28.0-tp2-") == true)
        let check = AgentChecks.streamedToolCall(r)
        #expect(check.passed, "\(check)")
        #expect(check.detail.hasPrefix(#"get_weather {"location": "Zurich"} in "#) && check.detail.hasSuffix("finish_reason tool_calls, 180 tokens"), "\(check.detail)")

        let id = try #require(s.orderedCalls.first?.id)
        let rt = post(try api(), AgentChecks.streamed(AgentChecks.roundTripRequest(model: "x", sampling: [], toolCallID: id), stream: true))
        #expect(AgentChecks.streamedRoundTrip(rt).passed, "\(AgentChecks.streamedRoundTrip(rt))")
        // Without stream_options the fingerprint moves to the finish chunk and there is no usage chunk.
        let bare = post(try api(), Data(#"{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.utf8))
        let b = StreamedChat.parse(bare.body)
        #expect(b.completionTokens == nil && b.fingerprint != nil && b.finishReason == "stop" && b.content == "Hello! How can I help?")
    }

    /// vllm#39056's shape: the call parses when not streamed and stays markup in content when streamed.
    @Test func aParserThatFailsOnlyWhenStreamingIsCaughtOnlyByTheStreamedCheck() throws {
        let a = try api([.streamMarkup])
        let plain = post(a, AgentChecks.toolCallRequest(model: "x", sampling: []))
        #expect(AgentChecks.toolCall(plain).passed)
        let check = AgentChecks.streamedToolCall(post(a, call))
        #expect(!check.passed)
        #expect(check.detail.hasPrefix("tool-call markup `<tool_call>` in the streamed content"), "\(check.detail)")
        #expect(check.diagnosis?.contains("vllm#39056") == true)
    }

    @Test func oneJSONBodyForAStreamIsZeroChunksToAnAgent() throws {
        let plain = post(try api(), AgentChecks.toolCallRequest(model: "x", sampling: []))
        let check = AgentChecks.streamedToolCall(plain)
        #expect(check.detail == "`stream: true` answered with application/json, not text/event-stream: 0 chunks")
    }

    @Test func aNameSentTwiceIsConcatenatedAsAnSDKDoes() {
        let r = stream(good + [callDelta(id: "call-1", name: "get_weather"), callDelta(name: "get_weather", arguments: #"{"location": "Zurich"}"#),
                               ([:], "tool_calls")])
        #expect(AgentChecks.streamedToolCall(r).detail == "the call reassembles to id `call-1`, name `get_weatherget_weather`")
    }

    @Test func aDuplicatedCallIsTwoCalls() {
        let r = stream(good + [callDelta(id: "a", name: "get_weather", arguments: #"{"location": "Zurich"}"#),
                               callDelta(id: "b", name: "get_weather", arguments: #"{"location": "Zurich"}"#, index: 1), ([:], "tool_calls")])
        let check = AgentChecks.streamedToolCall(r)
        #expect(check.detail == "2 calls streamed (`get_weather`, `get_weather`) for one request")
        #expect(check.diagnosis == "the parser duplicates or splits the call when streaming: an agent would run the tool 2 times")
    }

    @Test func argumentsAreTheConcatenationOfTheirPieces() {
        let whole = stream(good + [callDelta(id: "a", name: "get_weather"), callDelta(arguments: #"{"location": "#), callDelta(arguments: #""Zurich"}"#), ([:], "tool_calls")])
        #expect(AgentChecks.streamedToolCall(whole).passed, "\(AgentChecks.streamedToolCall(whole))")
        let dropped = stream(good + [callDelta(id: "a", name: "get_weather"), callDelta(arguments: #"{"location": "#), ([:], "tool_calls")])
        #expect(AgentChecks.streamedToolCall(dropped).detail == #"the concatenated arguments are not a JSON object: {"location": "#)
    }

    @Test func markupSplitAcrossDeltasIsFound() {
        let r = stream(good + [(["content": "<tool_"], nil), (["content": "call>{\"name\": \"get_weather\"}</tool_call>"], nil), ([:], "stop")])
        #expect(AgentChecks.streamedToolCall(r).detail.hasPrefix("tool-call markup `<tool_call>` in the streamed content"))
        let special = stream(good + [(["content": "<|tool_call_begin|>get_weather"], nil), ([:], "stop")])
        #expect(AgentChecks.streamedToolCall(special).detail.hasPrefix("tool-call markup `<|…|>`"))
        let mistral = stream(good + [(["content": "[TOOL_CALLS]get_weather"], nil), ([:], "stop")])
        #expect(AgentChecks.streamedToolCall(mistral).detail.hasPrefix("tool-call markup `[TOOL_CALLS]`"))
    }

    @Test func whatAnAgentNeedsAtTheEndOfAStream() {
        let call = [callDelta(id: "a", name: "get_weather", arguments: #"{"location": "Zurich"}"#)]
        #expect(AgentChecks.streamedToolCall(stream(good + call + [([:], "stop")])).detail == "finish_reason stop after a streamed call")
        #expect(AgentChecks.streamedToolCall(stream(good + call + [([:], "tool_calls")], usage: false)).detail == "no usage chunk although stream_options.include_usage was sent")
        #expect(AgentChecks.streamedToolCall(stream(good + call, done: false)).detail == "5 chunks, no data: [DONE]")
        #expect(AgentChecks.streamedToolCall(stream(good + [(["content": "<think>I need to call it</think>"], nil)] + call + [([:], "tool_calls")])).detail
                == "reasoning text in the streamed content: <think>I need to call it</think>")
        var broken = stream(good)
        broken.body = Data(("data: " + #"{"error":{"message":"EngineDeadError","type":"InternalServerError","param":null,"code":500}}"# + "\n\ndata: [DONE]\n\n").utf8)
        #expect(AgentChecks.streamedToolCall(broken).detail == "the stream carried an error: EngineDeadError")
    }

    @Test func requiredAndNamedCallsAreForced() throws {
        for mode in [ToolChoiceMode.required, .named] {
            let r = post(try api(), AgentChecks.forcedToolCallRequest(model: "x", sampling: [], mode: mode))
            let check = AgentChecks.forcedToolCall(r, mode: mode)
            #expect(check.passed, "\(check)")
            // A named choice keeps the engine's finish reason (serving.py v0.28.0:730-757).
            #expect(check.detail == #"get_weather {"location": "Zurich"}, finish_reason "# + (mode == .named ? "stop" : "tool_calls"))
            let streamed = StreamedChat.parse(post(try api(), AgentChecks.streamed(AgentChecks.forcedToolCallRequest(model: "x", sampling: [], mode: mode), stream: true)).body)
            #expect(streamed.orderedCalls == [StreamedChat.Call(id: streamed.orderedCalls.first?.id ?? "", name: "get_weather", arguments: #"{"location": "Zurich"}"#)])
        }
    }

    @Test func aTwelveTurnSessionWithFortySixToolsPasses() async throws {
        let tools = AgentSession.catalogue(46)
        #expect(tools.count == 46 && Set(tools.map { ($0["function"] as! [String: Any])["name"] as! String }).count == 46)
        let turns = await AgentSession.run(probe: SimAPIProbe(api: try api()), v1: "http://h/v1", model: "x", key: Secret("k"), sampling: [], turns: 12, tools: 46, timeout: .seconds(5))
        #expect(turns.count == 12 && turns.allSatisfy(\.passed), "\(turns.filter { !$0.passed })")
        #expect(turns[11].detail == #"get_weather {"location": "Budapest"}, then: It is 22°C and cloudy in Budapest right now."#)
        #expect(turns.allSatisfy { $0.tokensPerSecond != nil })
    }

    /// A parser that breaks deep in a conversation: the session names the turn.
    @Test func aSessionNamesTheTurnThatLeaksMarkup() async throws {
        let turns = await AgentSession.run(probe: SimAPIProbe(api: try api([.lateMarkup])), v1: "http://h/v1", model: "x", key: Secret("k"), sampling: [], turns: 12, tools: 46, timeout: .seconds(5))
        #expect(turns.count == 7 && turns.prefix(6).allSatisfy(\.passed))
        #expect(turns.last?.turn == 7 && turns.last?.passed == false)
        #expect(turns.last?.detail.hasPrefix("tool-call markup `<tool_call>` in the streamed content") == true, "\(turns.last?.detail ?? "")")
        // The markup names turn 7's city, as the parser left it.
        #expect(turns.last?.detail.contains("Madrid") == true, "\(turns.last?.detail ?? "")")
    }

    @Test func validatorChecksOnlyTheModesTheRecipeNames() async throws {
        let a = try api()
        let auto = await Validator(probe: SimAPIProbe(api: a), baseURL: "http://h/v1", model: "x", key: Secret("k")).run()
        #expect(auto.map(\.name) == ["model list", "auth enforced", "tool call", "JSON arguments", "tool-result round trip", "streamed tool call", "streamed round trip"])
        let all = await Validator(probe: SimAPIProbe(api: a), baseURL: "http://h/v1", model: "x", key: Secret("k"), toolChoices: [.auto, .required, .named], stream: false).run()
        #expect(all.map(\.name) == ["model list", "auth enforced", "tool call", "JSON arguments", "tool-result round trip", "required tool call", "named tool call"])
        #expect(all.filter { !$0.passed }.isEmpty, "\(all.filter { !$0.passed })")
    }

    @Test func recipesSayWhichToolChoiceModesTheModelHandles() throws {
        let base = try String(contentsOfFile: repoPath("recipes/gpt-oss-120b.yaml"), encoding: .utf8)
        let gptOSS = try RecipeReader.parse(base, file: "r.yaml").0
        #expect(gptOSS.toolChoices == [.auto])
        func issues(_ line: String) -> [String] {
            do { _ = try RecipeReader.parse(base.replacingOccurrences(of: "\ntool_choice: [auto]", with: "") + "\n" + line + "\n", file: "r.yaml"); return [] }
            catch { return error.issues.map(\.description) }
        }
        #expect(issues("tool_choice: [required]").first?.contains("tool_choice: must include auto") == true, "\(issues("tool_choice: [required]"))")
        #expect(issues("tool_choice: [auto, forced]").first?.contains("`forced` is not a tool_choice mode") == true)
        let qwen = try RecipeReader.load(path: repoPath("recipes/qwen3-coder-30b-a3b-fp8.yaml")).0
        #expect(qwen.toolChoices == [.auto, .required, .named])
    }

    /// The modelled engine's defaults and errors follow vLLM's (the differential test compares them with the real one).
    @Test func defaultsAndErrorBodiesAreVLLMs() throws {
        let a = try api()
        let noLimit = post(a, Data(#"{"model":"x","messages":[{"role":"user","content":"What is the weather in Zurich?"}],"tools":[\#(String(decoding: try JSONSerialization.data(withJSONObject: AgentChecks.weatherTool), as: UTF8.self))]}"#.utf8))
        #expect(AgentChecks.toolCall(noLimit).passed, "no max_tokens: the rest of the context, not 16 (\(noLimit.text.prefix(200)))")
        let unknown = post(a, Data(#"{"model":"y","messages":[{"role":"user","content":"hi"}]}"#.utf8))
        #expect(unknown.status == 404)
        #expect(unknown.text == #"{"error":{"code":404,"message":"The model `y` does not exist.","param":"model","type":"NotFoundError"}}"#)
        let options = post(a, Data(#"{"model":"x","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#.utf8))
        #expect(options.status == 400 && options.text.contains("Stream options can only be defined when `stream=True`."))
    }
}
