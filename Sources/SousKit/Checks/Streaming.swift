import Foundation

/// A streamed chat completion put back together the way the OpenAI SDK does it (openai-python
/// src/openai/lib/streaming/_deltas.py `accumulate_delta`: the deltas of one tool call are merged by `index`, their
/// strings concatenated — a name sent twice becomes the name twice), keeping what an agent also sees: every
/// content delta, the finish reason, the usage chunk and whether the stream was closed with `data: [DONE]`.
///
/// vLLM writes one `data: <json>\n\n` event per chunk and ends every stream, an error included, with
/// `data: [DONE]` (chat_completion/serving.py v0.28.0:558-559, :794-795, :886).
public struct StreamedChat: Sendable {
    public struct Call: Sendable, Equatable {
        public var id = ""
        public var name = ""
        public var arguments = ""
    }

    /// Chunks read (the usage chunk included).
    public var chunks = 0
    public var done = false
    public var content = ""
    /// Each content delta as sent: markup split across deltas is also looked for in `content`.
    public var contentDeltas: [String] = []
    /// `reasoning` (vLLM ≥ 0.17) or `reasoning_content` (before), concatenated.
    public var reasoning = ""
    /// The calls by their `index`.
    public var calls: [Int: Call] = [:]
    public var finishReason: String?
    public var completionTokens: Int?
    public var fingerprint: String?
    /// What no client could read: a line that is not JSON, an error event, a chunk after [DONE].
    public var problems: [String] = []

    public var orderedCalls: [Call] { calls.keys.sorted().compactMap { calls[$0] } }

    public static func parse(_ body: Data) -> StreamedChat {
        var s = StreamedChat()
        // SSE (WHATWG HTML §9.2.6): events end at a blank line; their `data:` lines are joined with "\n".
        var data: [String] = []
        func dispatch() {
            defer { data = [] }
            guard !data.isEmpty else { return }
            s.event(data.joined(separator: "\n"))
        }
        for raw in String(decoding: body, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw[...]
            if line.isEmpty { dispatch(); continue }
            if line.hasPrefix(":") { continue }
            if line.hasPrefix("data:") {
                let value = line.dropFirst(5)
                data.append(String(value.hasPrefix(" ") ? value.dropFirst() : value))
            }
        }
        dispatch()
        return s
    }

    mutating func event(_ text: String) {
        if done { problems.append("a chunk after data: [DONE]"); return }
        if text == "[DONE]" { done = true; return }
        guard let chunk = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            problems.append("an event that is not JSON: \(text.prefix(80))")
            return
        }
        if let error = chunk["error"] {
            let message = (error as? [String: Any])?["message"] as? String ?? "\(error)"
            problems.append("the stream carried an error: \(message.prefix(200))")
            return
        }
        chunks += 1
        if let fp = chunk["system_fingerprint"] as? String { fingerprint = fp }
        if let usage = chunk["usage"] as? [String: Any], let n = usage["completion_tokens"] as? Int { completionTokens = n }
        for choice in chunk["choices"] as? [[String: Any]] ?? [] where (choice["index"] as? Int ?? 0) == 0 {
            if let f = choice["finish_reason"] as? String { finishReason = f }
            guard let delta = choice["delta"] as? [String: Any] else { continue }
            if let c = delta["content"] as? String, !c.isEmpty { content += c; contentDeltas.append(c) }
            if let r = (delta["reasoning"] ?? delta["reasoning_content"]) as? String { reasoning += r }
            for call in delta["tool_calls"] as? [[String: Any]] ?? [] {
                guard let index = call["index"] as? Int else { problems.append("a tool-call delta without an index"); continue }
                var c = calls[index] ?? Call()
                c.id += call["id"] as? String ?? ""
                let function = call["function"] as? [String: Any]
                c.name += function?["name"] as? String ?? ""
                c.arguments += function?["arguments"] as? String ?? ""
                calls[index] = c
            }
        }
    }
}

/// How a request may ask for a tool call (OpenAI's `tool_choice`): what the model lets the checks use.
public enum ToolChoiceMode: String, Sendable, CaseIterable, Encodable {
    /// The model decides (the parser takes the call apart): what coding agents send.
    case auto
    /// A call is forced, any tool (vLLM: structured outputs).
    case required
    /// One named tool is forced.
    case named
}

extension AgentChecks {
    /// The streamed and forced-call checks, beside the seed's four.
    public static let agentExtras: Set<String> = ["streamed tool call", "streamed round trip", "required tool call", "named tool call"]

    /// `4/4 agent checks, 4/4 streamed and forced-call checks, 401 without the key`.
    public static func summary(_ checks: [CheckResult]) -> String {
        func count(_ names: Set<String>) -> (Int, Int) { let c = checks.filter { names.contains($0.name) }; return (c.filter(\.passed).count, c.count) }
        let (four, fourOf) = count(fourChecks), (extra, extraOf) = count(agentExtras)
        return "\(four)/\(fourOf) agent checks" + (extraOf > 0 ? ", \(extra)/\(extraOf) streamed and forced-call checks" : "")
            + (checks.contains { $0.name == "auth enforced" && $0.passed } ? ", 401 without the key" : "")
    }

    /// Tool-call markup a parser should have taken apart, as the models of this field write it.
    static let markup = ["<tool_call>", "</tool_call>", "<function=", "<|", "[TOOL_CALLS]"]

    static func markupIn(_ s: StreamedChat) -> String? {
        for m in markup where s.content.contains(m) || s.contentDeltas.contains(where: { $0.contains(m) }) {
            if m == "<|", !s.content.contains("|>") { continue }
            return m == "<|" ? "<|…|>" : m
        }
        return nil
    }

    /// A request as the checks send it, streamed when asked (with usage on the final chunk, as agents ask).
    static func streamed(_ body: Data, stream: Bool) -> Data {
        guard stream, var object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return body }
        object["stream"] = true
        object["stream_options"] = ["include_usage": true]
        return try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    /// The tool-call request with another `tool_choice`.
    public static func forcedToolCallRequest(model: String, sampling: [(String, Double)], mode: ToolChoiceMode) -> Data {
        var body = (try? JSONSerialization.jsonObject(with: toolCallRequest(model: model, sampling: sampling)) as? [String: Any]) ?? [:]
        switch mode {
        case .auto: body["tool_choice"] = "auto"
        case .required: body["tool_choice"] = "required"
        case .named: body["tool_choice"] = ["type": "function", "function": ["name": "get_weather"]]
        }
        return try! JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    /// A stream's first problem, or nil when it is a stream a client can read.
    static func unreadable(_ r: HTTPResponse, _ s: StreamedChat, name: String) -> CheckResult? {
        if r.status == 401 { return CheckResult(name: name, passed: false, detail: "HTTP 401", diagnosis: unauthorized) }
        guard r.status == 200 else {
            return CheckResult(name: name, passed: false, detail: "HTTP \(r.status): \(r.text.prefix(200))", diagnosis: "the engine did not answer a streamed completion; see the head's container log")
        }
        if !(r.contentType ?? "").lowercased().hasPrefix("text/event-stream") {
            return CheckResult(name: name, passed: false, detail: "`stream: true` answered with \(r.contentType ?? "no Content-Type"), not text/event-stream: \(s.chunks) chunks",
                               diagnosis: "agents stream every response and read nothing from one JSON body: something in front of vLLM does not stream (a proxy that buffers), or this is not vLLM")
        }
        if let p = s.problems.first {
            return CheckResult(name: name, passed: false, detail: p, diagnosis: "an SSE client stops here; see the head's container log")
        }
        if s.chunks == 0 || !s.done {
            return CheckResult(name: name, passed: false, detail: "\(s.chunks) chunks\(s.done ? "" : ", no data: [DONE]")",
                               diagnosis: "the stream was cut: the engine or a proxy closed it early; see the head's container log")
        }
        if let m = markupIn(s) {
            return CheckResult(name: name, passed: false, detail: "tool-call markup `\(m)` in the streamed content: \(s.content.prefix(120))",
                               diagnosis: "the tool parser leaves the call in the text when streaming (vllm#39056 is such a bug; the non-streamed check can still pass): check --tool-call-parser against the model card and the vLLM release")
        }
        return nil
    }

    /// The streamed tool call, reassembled as an SDK client does: one call with an id and the tool's name, JSON
    /// arguments, finish_reason tool_calls, reasoning only in its field, usage on the final chunk.
    public static func streamedToolCall(_ r: HTTPResponse) -> CheckResult {
        let name = "streamed tool call"
        let s = StreamedChat.parse(r.body)
        if let bad = unreadable(r, s, name: name) { return bad }
        let calls = s.orderedCalls
        if calls.isEmpty {
            if s.finishReason == "length" {
                return CheckResult(name: name, passed: false, detail: "finish_reason length before any tool call",
                                   diagnosis: "reasoning ate the output budget: raise max_tokens (2048–4096) and the client's output limit")
            }
            return CheckResult(name: name, passed: false, detail: "no tool-call delta in \(s.chunks) chunks, finish_reason \(s.finishReason ?? "null"); content: \(s.content.prefix(120))",
                               diagnosis: looksLikeReasoning(s.content)
                                ? "reasoning text is in content and the call is prose: the reasoning and tool parsers are not the model's"
                                : "the streamed call was dropped or described in prose: check --tool-call-parser against the model card")
        }
        if calls.count > 1 {
            return CheckResult(name: name, passed: false, detail: "\(calls.count) calls streamed (\(calls.map { "`\($0.name)`" }.joined(separator: ", "))) for one request",
                               diagnosis: "the parser duplicates or splits the call when streaming: an agent would run the tool \(calls.count) times")
        }
        let call = calls[0]
        guard !call.id.isEmpty, call.name == "get_weather" else {
            return CheckResult(name: name, passed: false, detail: "the call reassembles to id `\(call.id)`, name `\(call.name.prefix(80))`",
                               diagnosis: "the parser sends the id or name in pieces or twice when streaming; an SDK concatenates them")
        }
        guard let args = try? JSONSerialization.jsonObject(with: Data(call.arguments.utf8)), args is [String: Any] else {
            return CheckResult(name: name, passed: false, detail: "the concatenated arguments are not a JSON object: \(call.arguments.prefix(120))",
                               diagnosis: "argument deltas were dropped or repeated by the parser when streaming")
        }
        guard s.finishReason == "tool_calls" else {
            return CheckResult(name: name, passed: false, detail: "finish_reason \(s.finishReason ?? "null") after a streamed call",
                               diagnosis: "agents wait for finish_reason tool_calls before running the tool")
        }
        if looksLikeReasoning(s.content) {
            return CheckResult(name: name, passed: false, detail: "reasoning text in the streamed content: \(s.content.prefix(120))",
                               diagnosis: "the reasoning parser is misconfigured: use the model's prescribed --reasoning-parser")
        }
        guard let tokens = s.completionTokens else {
            return CheckResult(name: name, passed: false, detail: "no usage chunk although stream_options.include_usage was sent",
                               diagnosis: "agents count tokens from the final chunk; vLLM sends it when asked: something in front of it drops it")
        }
        return CheckResult(name: name, passed: true, detail: "get_weather \(call.arguments) in \(s.chunks) chunks, finish_reason tool_calls, \(tokens) tokens" + (r.firstByte.map { ", first chunk after \(Human.duration($0.seconds))" } ?? ""))
    }

    /// The streamed answer after the tool result: text, finish_reason stop, no call, no markup.
    public static func streamedRoundTrip(_ r: HTTPResponse) -> CheckResult {
        let name = "streamed round trip"
        let s = StreamedChat.parse(r.body)
        if let bad = unreadable(r, s, name: name) { return bad }
        if let call = s.orderedCalls.first {
            return CheckResult(name: name, passed: false, detail: "called `\(call.name)` again",
                               diagnosis: "the tool-result turn is not consumed when streaming: check that tool_call_id is echoed and the chat template handles role tool")
        }
        guard s.finishReason == "stop", !s.content.isEmpty else {
            return CheckResult(name: name, passed: false, detail: "finish_reason \(s.finishReason ?? "null"), content \(s.content.isEmpty ? "empty" : String(s.content.prefix(80)))",
                               diagnosis: s.finishReason == "length" ? "raise max_tokens (2048–4096)" : "the model did not answer from the tool result")
        }
        if looksLikeReasoning(s.content) {
            return CheckResult(name: name, passed: false, detail: "reasoning text in the streamed answer", diagnosis: "the reasoning parser is misconfigured")
        }
        return CheckResult(name: name, passed: true, detail: "finish_reason stop in \(s.chunks) chunks: \(s.content.prefix(80))")
    }

    /// A forced call (`required` or one named tool): vLLM constrains the output, so the call must be there and
    /// parse. finish_reason is tool_calls for `required`; a named choice keeps the engine's own (serving.py
    /// v0.28.0:730-757: `tool_calls` only `if tools_streamed and not tool_choice_function_name`).
    public static func forcedToolCall(_ r: HTTPResponse, mode: ToolChoiceMode) -> CheckResult {
        let name = "\(mode.rawValue) tool call"
        if r.status == 401 { return CheckResult(name: name, passed: false, detail: "HTTP 401", diagnosis: unauthorized) }
        guard r.status == 200, let c = choice(r), let message = c["message"] as? [String: Any] else {
            return CheckResult(name: name, passed: false, detail: "HTTP \(r.status): \(r.text.prefix(200))",
                               diagnosis: "the engine refused tool_choice \(mode.rawValue): if the model does not support it, drop `\(mode.rawValue)` from the recipe's tool_choice list")
        }
        let calls = message["tool_calls"] as? [[String: Any]] ?? []
        let finish = c["finish_reason"] as? String ?? "null"
        let fn = calls.first?["function"] as? [String: Any]
        guard calls.count == 1, fn?["name"] as? String == "get_weather" else {
            return CheckResult(name: name, passed: false, detail: "\(calls.count) calls (\(fn?["name"] as? String ?? "none")), finish_reason \(finish)",
                               diagnosis: "the forced call did not come back as one get_weather call: check --tool-call-parser and the structured-outputs backend in the startup log")
        }
        let args = fn?["arguments"] as? String ?? ""
        guard let obj = try? JSONSerialization.jsonObject(with: Data(args.utf8)), obj is [String: Any] else {
            return CheckResult(name: name, passed: false, detail: "arguments not a JSON object: \(args.prefix(120))", diagnosis: "the constrained output was cut or malformed: raise max_tokens")
        }
        let expected = mode == .named ? ["stop", "tool_calls"] : ["tool_calls"]
        guard expected.contains(finish) else {
            return CheckResult(name: name, passed: false, detail: "finish_reason \(finish)", diagnosis: finish == "length" ? "raise max_tokens" : "an unexpected finish_reason for a forced call")
        }
        return CheckResult(name: name, passed: true, detail: "get_weather \(args), finish_reason \(finish)")
    }
}
