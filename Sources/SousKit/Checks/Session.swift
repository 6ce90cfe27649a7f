import Foundation

/// A deterministic multi-turn agent session, streamed as coding agents stream: a tool catalogue of the size real
/// agents send, each turn a weather call to answer, the tool's result fed back, the previous turns kept in the
/// conversation (their reasoning not echoed, as the Qwen3 and Nemotron chat templates drop it from history).
public enum AgentSession {
    public struct Turn: Sendable, Encodable {
        public var turn: Int
        public var passed: Bool
        public var detail: String
        public var diagnosis: String?
        /// The first streamed request's time to its first chunk.
        public var ttftSeconds: Double?
        /// Completion tokens of both requests over their time.
        public var tokensPerSecond: Double?
    }

    static let cities = ["Zurich", "Paris", "Lisbon", "Oslo", "Vienna", "Prague", "Madrid", "Dublin", "Athens", "Warsaw", "Helsinki", "Budapest"]
    /// What coding agents offer beside the one tool a turn needs.
    static let agentTools = ["read_file", "write_file", "edit_file", "list_directory", "glob", "grep", "bash", "web_fetch",
                             "todo_read", "todo_write", "task", "patch", "lsp_diagnostics", "lsp_hover", "git_status", "git_diff"]

    /// `count` tools (at least 1): get_weather in the middle, agent tools and numbered MCP-style tools around it.
    public static func catalogue(_ count: Int) -> [[String: Any]] {
        var names = Array(agentTools.prefix(max(0, count - 1)))
        var i = 1
        while names.count < count - 1 { names.append("mcp_tool_\(i)"); i += 1 }
        var tools: [[String: Any]] = names.map { name in
            ["type": "function", "function": ["name": name, "description": "The agent's \(name.replacingOccurrences(of: "_", with: " ")) tool.",
                                              "parameters": ["type": "object", "properties": ["path": ["type": "string", "description": "A path or query."]],
                                                             "required": ["path"]]] as [String: Any]]
        }
        tools.insert(AgentChecks.weatherTool, at: tools.count / 2)
        return tools
    }

    public static func run(probe: HTTPProbe, v1: String, model: String, key: Secret?, sampling: [(String, Double)],
                           turns: Int, tools count: Int, timeout: Duration) async -> [Turn] {
        let tools = catalogue(count)
        var messages: [[String: Any]] = [["role": "system", "content": "You are a coding agent. Use the tools you are given."]]
        var out: [Turn] = []
        func request(_ msgs: [[String: Any]]) -> Data {
            var body: [String: Any] = ["model": model, "max_tokens": 1024, "tool_choice": "auto", "tools": tools, "messages": msgs,
                                       "stream": true, "stream_options": ["include_usage": true]]
            for (k, v) in sampling { body[k] = v }
            return try! JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
        }
        for t in 1...max(1, turns) {
            let city = cities[(t - 1) % cities.count]
            messages.append(["role": "user", "content": "What is the current weather in \(city)? Call the get_weather tool."])
            var turn = Turn(turn: t, passed: false, detail: "")
            let clock = ContinuousClock(), start = clock.now
            do {
                let call = try await probe.post(v1 + "/chat/completions", json: request(messages), bearer: key, timeout: timeout)
                turn.ttftSeconds = call.firstByte.map { $0.seconds }
                var check = AgentChecks.streamedToolCall(call)
                let s = StreamedChat.parse(call.body)
                let c = s.orderedCalls.first
                if check.passed, let args = try? JSONSerialization.jsonObject(with: Data((c?.arguments ?? "").utf8)) as? [String: Any],
                   args["location"] as? String != city {
                    check = CheckResult(name: check.name, passed: false, detail: "called get_weather for \(args["location"] ?? "nothing"), not \(city)",
                                        diagnosis: "the model lost track of the turn: check the chat template's handling of earlier tool calls and results")
                }
                guard check.passed, let c else {
                    turn.detail = check.detail
                    turn.diagnosis = check.diagnosis
                    out.append(turn)
                    break
                }
                messages.append(["role": "assistant", "content": NSNull(),
                                 "tool_calls": [["id": c.id, "type": "function", "function": ["name": c.name, "arguments": c.arguments]]]])
                messages.append(["role": "tool", "tool_call_id": c.id,
                                 "content": "{\"location\": \"\(city)\", \"temp_c\": \(10 + t), \"condition\": \"cloudy\"}"])
                let answer = try await probe.post(v1 + "/chat/completions", json: request(messages), bearer: key, timeout: timeout)
                let reply = AgentChecks.streamedRoundTrip(answer)
                let a = StreamedChat.parse(answer.body)
                let seconds = (clock.now - start).seconds
                let tokens = (s.completionTokens ?? 0) + (a.completionTokens ?? 0)
                turn.tokensPerSecond = seconds > 0 ? Double(tokens) / seconds : nil
                turn.passed = reply.passed
                turn.detail = reply.passed ? "get_weather \(c.arguments), then: \(a.content.trimmingCharacters(in: .whitespacesAndNewlines).prefix(60))" : reply.detail
                turn.diagnosis = reply.diagnosis
                out.append(turn)
                guard reply.passed else { break }
                messages.append(["role": "assistant", "content": a.content])
            } catch {
                turn.detail = "\(error)"
                turn.diagnosis = "the endpoint did not answer turn \(t) within \(timeout)"
                out.append(turn)
                break
            }
        }
        return out
    }
}
