import Foundation

/// An HTTP answer as the checks see it.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var body: Data
    /// The Content-Type header, when the answer had one (a stream is `text/event-stream`).
    public var contentType: String?
    /// From the request's start to the first byte of the body: for a stream, the time to the first token
    /// (vLLM sends its first chunk with the first engine output, chat_completion/serving.py v0.28.0:519-559).
    public var firstByte: Duration?
    public init(status: Int, body: Data, contentType: String? = nil, firstByte: Duration? = nil) {
        self.status = status
        self.body = body
        self.contentType = contentType
        self.firstByte = firstByte
    }
    public init(status: Int, _ text: String) { self.init(status: status, body: Data(text.utf8)) }
    /// The answer itself; when it arrived is not part of it.
    public static func == (l: Self, r: Self) -> Bool { l.status == r.status && l.body == r.body && l.contentType == r.contentType }
    var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Talks HTTP to an endpoint; the live one uses URLSession, tests use canned answers.
public protocol HTTPProbe: Sendable {
    func get(_ url: String, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse
    func post(_ url: String, json: Data, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse
}

/// The verdict of one check, with the seed's symptom → cause → fix when it fails.
public struct CheckResult: Sendable, Equatable, Encodable {
    public var name: String
    public var passed: Bool
    public var detail: String
    /// Cause and fix, from the seed's gotchas table.
    public var diagnosis: String?
}

/// The seed's four endpoint checks (model list, tool call, JSON arguments, tool-result round trip) and the
/// fingerprint check, as pure verdicts over HTTP responses.
public enum AgentChecks {
    /// The seed's four checks (the others, auth and fingerprint, are extra gates).
    public static let fourChecks: Set<String> = ["model list", "tool call", "JSON arguments", "tool-result round trip"]

    public static let toolPrompt = "What is the current weather in Zurich? Call the get_weather tool to find out."

    public static var weatherTool: [String: Any] { [
        "type": "function",
        "function": [
            "name": "get_weather", "description": "Get the current weather for a city.",
            "parameters": ["type": "object",
                           "properties": ["location": ["type": "string", "description": "City name, e.g. Zurich"],
                                          "unit": ["type": "string", "enum": ["celsius", "fahrenheit"]]],
                           "required": ["location"]],
        ] as [String: Any],
    ] }

    /// A one-token completion: the cheapest real request, for liveness and the fingerprint.
    public static func pingRequest(model: String, stream: Bool = false) -> Data {
        var body: [String: Any] = ["model": model, "max_tokens": 1, "messages": [["role": "user", "content": "ping"]]]
        if stream { body["stream"] = true }
        return try! JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    /// The request of checks 2 and 3 (the seed's 4b/4c), sampling from the recipe when given.
    public static func toolCallRequest(model: String, sampling: [(String, Double)], maxTokens: Int = 1024) -> Data {
        var body: [String: Any] = ["model": model, "max_tokens": maxTokens, "tool_choice": "auto",
                                   "messages": [["role": "user", "content": toolPrompt]], "tools": [weatherTool]]
        for (k, v) in sampling { body[k] = v }
        return try! JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    /// The request of check 4 (the seed's 4d): the assistant's tool call echoed back without reasoning, then the result.
    public static func roundTripRequest(model: String, sampling: [(String, Double)], toolCallID: String, maxTokens: Int = 1024) -> Data {
        let call: [String: Any] = ["id": toolCallID, "type": "function",
                                   "function": ["name": "get_weather", "arguments": "{\"location\": \"Zurich\"}"]]
        var body: [String: Any] = [
            "model": model, "max_tokens": maxTokens, "tools": [weatherTool],
            "messages": [["role": "user", "content": "What is the current weather in Zurich? Call the get_weather tool."],
                         ["role": "assistant", "content": NSNull(), "tool_calls": [call]],
                         ["role": "tool", "tool_call_id": toolCallID, "content": "{\"location\": \"Zurich\", \"temp_c\": 12, \"condition\": \"cloudy\"}"]],
        ]
        for (k, v) in sampling { body[k] = v }
        return try! JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    static let unauthorized = "401: the Authorization header is missing or wrong (the server answered {\"error\": …} with no data; `jq '.data[].id'` would say \"Cannot iterate over null\"). Send `Authorization: Bearer $VLLM_API_KEY` with the key the server was started with."

    /// Check 1: the model list, with the key.
    public static func modelList(_ r: HTTPResponse, model: String) -> CheckResult {
        let name = "model list"
        if r.status == 401 { return CheckResult(name: name, passed: false, detail: "HTTP 401", diagnosis: unauthorized) }
        guard r.status == 200, let data = r.json?["data"] as? [[String: Any]] else {
            return CheckResult(name: name, passed: false, detail: "HTTP \(r.status): \(r.text.prefix(200))",
                               diagnosis: "the endpoint did not return a model list; if this is HTML, a reverse proxy is answering: test the node directly on its port")
        }
        let ids = data.compactMap { $0["id"] as? String }
        guard ids.contains(model) else {
            return CheckResult(name: name, passed: false, detail: "serves \(ids.map { "`\($0)`" }.joined(separator: ", ")), not `\(model)`",
                               diagnosis: "the client's model key must equal --served-model-name exactly; use `\(ids.first ?? "?")` or fix served_model_name in the recipe")
        }
        let len = data.first { $0["id"] as? String == model }?["max_model_len"] as? Int
        return CheckResult(name: name, passed: true, detail: "serves `\(model)`" + (len.map { " (max_model_len \($0))" } ?? ""))
    }

    /// The key is enforced: the same list without a key must be 401.
    public static func authEnforced(_ r: HTTPResponse) -> CheckResult {
        let name = "auth enforced"
        if r.status == 401 { return CheckResult(name: name, passed: true, detail: "401 without the key") }
        return CheckResult(name: name, passed: false, detail: "HTTP \(r.status) without a key",
                           diagnosis: "the server does not enforce the API key: VLLM_API_KEY is not set in the head's environment (the env file)")
    }

    static func choice(_ r: HTTPResponse) -> [String: Any]? {
        (r.json?["choices"] as? [[String: Any]])?.first
    }

    static func looksLikeReasoning(_ s: String) -> Bool {
        s.contains("<think>") || s.contains("</think>") || s.lowercased().contains("i need to")
    }

    /// Check 2: a tool call comes back as structured tool_calls with finish_reason tool_calls.
    public static func toolCall(_ r: HTTPResponse) -> CheckResult {
        let name = "tool call"
        if r.status == 401 { return CheckResult(name: name, passed: false, detail: "HTTP 401", diagnosis: unauthorized) }
        if r.status == 404 {
            return CheckResult(name: name, passed: false, detail: "HTTP 404: \(r.text.prefix(160))",
                               diagnosis: "model not found: the request's model must equal --served-model-name (check /v1/models)")
        }
        let error = ((r.json?["error"] as? [String: Any])?["message"] as? String) ?? ""
        if r.status == 400, error.contains("tool choice requires") || error.contains("requires --tool-call-parser") {
            // vLLM refuses tools it cannot parse (renderers/online_renderer.py v0.28.0:145-173).
            return CheckResult(name: name, passed: false, detail: "HTTP 400: \(error.prefix(160))",
                               diagnosis: "the engine was started without --enable-auto-tool-choice and --tool-call-parser (both are needed); check the recipe's parsers.tool_call and the startup log")
        }
        guard r.status == 200, let c = choice(r), let message = c["message"] as? [String: Any] else {
            return CheckResult(name: name, passed: false, detail: "HTTP \(r.status): \(r.text.prefix(200))", diagnosis: "the engine did not answer a completion; see the head's container log")
        }
        let finish = c["finish_reason"] as? String ?? "null"
        let calls = message["tool_calls"] as? [[String: Any]] ?? []
        let content = message["content"] as? String ?? ""
        if finish == "length" && calls.isEmpty {
            return CheckResult(name: name, passed: false, detail: "finish_reason length before any tool call",
                               diagnosis: "reasoning ate the output budget: raise max_tokens (2048–4096) and the client's output limit")
        }
        if calls.isEmpty {
            let leak = looksLikeReasoning(content)
            return CheckResult(name: name, passed: false, detail: "tool_calls empty, finish_reason \(finish); content: \(content.prefix(120))",
                               diagnosis: leak
                                ? "reasoning text is in content and the call is prose: the reasoning and tool parsers are not the model's; use the recipe's --reasoning-parser and --tool-call-parser"
                                : "the tool call was described in prose: the tool parser is not active or wrong; check --enable-auto-tool-choice and --tool-call-parser in the startup log")
        }
        let fn = calls[0]["function"] as? [String: Any]
        guard finish == "tool_calls", fn?["name"] as? String == "get_weather" else {
            return CheckResult(name: name, passed: false, detail: "finish_reason \(finish), called \(fn?["name"] as? String ?? "nothing")",
                               diagnosis: "the tool parser returned an unexpected call; check --tool-call-parser against the model card")
        }
        if looksLikeReasoning(content) {
            return CheckResult(name: name, passed: false, detail: "reasoning text in content beside the tool call",
                               diagnosis: "the reasoning parser is misconfigured: use the model's prescribed --reasoning-parser; content and reasoning must be separate")
        }
        return CheckResult(name: name, passed: true, detail: "get_weather called, finish_reason tool_calls, id \(calls[0]["id"] as? String ?? "?")")
    }

    /// Check 3: the arguments are a JSON object (`.function.arguments | fromjson`).
    public static func jsonArguments(_ r: HTTPResponse) -> CheckResult {
        let name = "JSON arguments"
        guard let c = choice(r), let calls = (c["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]],
              let args = (calls.first?["function"] as? [String: Any])?["arguments"] as? String else {
            return CheckResult(name: name, passed: false, detail: "no tool call to read arguments from", diagnosis: "fix the tool call first")
        }
        if looksLikeReasoning(args) {
            return CheckResult(name: name, passed: false, detail: "reasoning text inside the arguments: \(args.prefix(120))",
                               diagnosis: "the reasoning parser is misconfigured: use the model's prescribed --reasoning-parser")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(args.utf8)), obj is [String: Any] else {
            return CheckResult(name: name, passed: false, detail: "not parseable JSON: \(args.prefix(120))",
                               diagnosis: "a parser/model mismatch: re-run; if it persists, check --tool-call-parser against the model card and file upstream")
        }
        return CheckResult(name: name, passed: true, detail: args)
    }

    /// The tool-call id to echo back in check 4.
    public static func toolCallID(_ r: HTTPResponse) -> String? {
        ((choice(r)?["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]])?.first?["id"] as? String
    }

    /// Check 4: after the tool result, the model answers (finish stop) instead of calling the tool again.
    public static func roundTrip(_ r: HTTPResponse) -> CheckResult {
        let name = "tool-result round trip"
        guard r.status == 200, let c = choice(r), let message = c["message"] as? [String: Any] else {
            return CheckResult(name: name, passed: false, detail: "HTTP \(r.status): \(r.text.prefix(200))", diagnosis: "the engine did not answer; see the head's container log")
        }
        let finish = c["finish_reason"] as? String ?? "null"
        let calls = message["tool_calls"] as? [[String: Any]] ?? []
        let content = message["content"] as? String ?? ""
        if !calls.isEmpty {
            return CheckResult(name: name, passed: false, detail: "called \((calls[0]["function"] as? [String: Any])?["name"] as? String ?? "a tool") again",
                               diagnosis: "the tool-result turn is not consumed (an agent would repeat the action): check that tool_call_id is echoed and the chat template handles role tool")
        }
        if finish == "length" {
            return CheckResult(name: name, passed: false, detail: "finish_reason length", diagnosis: "raise max_tokens (2048–4096)")
        }
        guard finish == "stop", !content.isEmpty else {
            return CheckResult(name: name, passed: false, detail: "finish_reason \(finish), content \(content.isEmpty ? "empty" : content)",
                               diagnosis: "the model did not answer from the tool result")
        }
        if looksLikeReasoning(content) {
            return CheckResult(name: name, passed: false, detail: "reasoning text in the answer", diagnosis: "the reasoning parser is misconfigured")
        }
        return CheckResult(name: name, passed: true, detail: "finish_reason stop: \(content.prefix(80))")
    }

    /// The topology check: `system_fingerprint` shows tp<N> (vLLM ≥ 0.21 in full mode).
    public static func fingerprint(_ r: HTTPResponse, tensorParallel n: Int) -> CheckResult {
        let name = "fingerprint tp\(n)"
        guard let fp = r.json?["system_fingerprint"] as? String else {
            return CheckResult(name: name, passed: false, detail: "no system_fingerprint in the response",
                               diagnosis: "vLLM before 0.21, or --fingerprint-mode other than full: verify the topology from docker inspect and the engine log")
        }
        let parts = fp.split(separator: "-").map(String.init)
        if n > 1, !parts.contains("tp\(n)") {
            return CheckResult(name: name, passed: false, detail: fp,
                               diagnosis: "the engine is not serving with tensor parallel \(n): a node may have fallen back or not joined")
        }
        return CheckResult(name: name, passed: true, detail: fp)
    }
}
