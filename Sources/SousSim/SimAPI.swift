import Foundation
import SousKit

/// Faults a simulated node can be switched into (`sous sim fault NODE KIND`).
public enum SimFault: String, Sendable, CaseIterable {
    case slowLoad = "slow-load"
    case crashOnStart = "crash-on-start"
    case crashLater = "crash-later"
    case workerNeverJoins = "worker-never-joins"
    /// Reasoning leaks into content; the tool call comes out as prose.
    case wrongParser = "wrong-parser"
    case malformedArguments = "malformed-arguments"
    /// /health 503, completions 500.
    case engineDead = "engine-dead"
    /// /health 200 but completions never answer (a stuck NCCL collective).
    case wedge
    case sshdDown = "sshd-down"
    /// The interconnect MTU drops to 1500 (as after a firmware capsule reboot).
    case mtu1500 = "mtu-1500"
    /// The node refuses the other nodes' SSH key (no node-to-node login, so no rsync between them).
    case noNodeSSH = "no-node-ssh"
    /// The node has no Hugging Face CLI on the host (only the one inside the image).
    case noHostHF = "no-host-hf"
    /// A power cycle: every process of the node killed, then the node boots again on the same disk (dockerd
    /// brings back the containers whose restart policy says so). Happens once; there is nothing to switch off.
    case reboot
    /// The node's Docker daemon is gone (the CLI cannot reach its socket); --off starts it again.
    case dockerDown = "docker-down"
    /// The node's Docker data root is full: a pull fails with the daemon's own ENOSPC error.
    case diskFull = "disk-full"
    /// The node has no RDMA device nodes (/dev/infiniband is empty), as without the ConnectX-7 driver.
    case noRDMA = "no-rdma"
    /// The simulation's registry is gone (every node; the node named is ignored).
    case registryDown = "registry-down"
    /// The registry accepts connections but never answers: a pull stalls (every node).
    case registryStall = "registry-stall"
    /// Streamed tool calls come out as markup in content while non-streamed ones parse (vllm#39056).
    case streamMarkup = "stream-markup"
    /// The same, only from the seventh user turn of a conversation on (a parser that fails deep in a session).
    case lateMarkup = "late-markup"
}

/// The OpenAI-compatible behaviour of the simulated vLLM head, as a pure function of the request.
public struct SimAPI: Sendable {
    public var args: ServeArgs
    public var version: VLLMVersion
    public var versionString: String
    /// Ranks that actually joined (the fingerprint shows these, not the configured size).
    public var joinedRanks: Int
    public var apiKey: String?
    public var faults: Set<SimFault>
    /// Requests being answered, this one included: vLLM's `vllm:num_requests_running` gauge (v1/metrics/loggers.py
    /// v0.28.0:493-501, set from the scheduler's num_running_reqs at :1109-1110); nothing here waits, so
    /// `vllm:num_requests_waiting` stays 0.
    public var running = 0
    /// A rank of the group went away (SimVLLM): the next completion fails as vLLM 0.28's first collective to the
    /// lost rank does, `RuntimeError("Worker failed with error …")` (v1/executor/multiproc_executor.py:433-437).
    public var rankLost = false

    public init(args: ServeArgs, version: VLLMVersion, versionString: String, joinedRanks: Int, apiKey: String?, faults: Set<SimFault>) {
        self.args = args
        self.version = version
        self.versionString = versionString
        self.joinedRanks = joinedRanks
        self.apiKey = apiKey
        self.faults = faults
    }

    public struct Response: Sendable, Equatable {
        public var status: Int
        public var body: String
        public var contentType = "application/json"
    }

    /// Tokens the simulated model spends reasoning before a tool call (the seed measured ~160).
    public static let reasoningTokens = 160

    public var fingerprint: String? {
        guard version >= VLLMVersion(0, 21, 0), args.fingerprintMode != "none" else { return nil }
        let hash = String(sha256Hex("\(args.model)|\(args.servedName)|\(args.quantization ?? "auto")|\(args.kvCacheDtype)|\(args.maxModelLen)|\(args.tensorParallelSize)").prefix(8))
        if args.fingerprintMode == "custom" { return args.other["fingerprint-value"] }
        let tp = args.fingerprintMode == "full" && joinedRanks > 1 ? "-tp\(joinedRanks)" : ""
        return "vllm-\(versionString)\(tp)-\(hash)"
    }

    /// The field reasoning goes in: `reasoning` since the rename (vLLM 0.17), `reasoning_content` before.
    public var reasoningField: String { version >= VLLMVersion(0, 17, 0) ? "reasoning" : "reasoning_content" }

    public func handle(method: String, path: String, authorization: String?, body: Data) -> Response {
        let route = path.split(separator: "?").first.map(String.init) ?? path
        switch (method, route) {
        case ("GET", "/health"), ("GET", "/ping"):
            return faults.contains(.engineDead) ? Response(status: 503, body: "") : Response(status: 200, body: "")
        case ("GET", "/version"):
            return Response(status: 200, body: json(["version": versionString]))
        case ("GET", "/metrics"):
            return Response(status: 200, body: metrics, contentType: "text/plain; version=0.0.4")
        default: break
        }
        if route.hasPrefix("/v1") || route.hasPrefix("/v2") || route.hasPrefix("/inference") {
            if let apiKey, authorization != "Bearer \(apiKey)" {
                return Response(status: 401, body: #"{"error":"Unauthorized"}"#)
            }
        }
        switch (method, route) {
        case ("GET", "/v1/models"):
            let card: [String: Any] = ["id": args.servedName, "object": "model", "created": 1_700_000_000, "owned_by": "vllm",
                                       "root": args.model, "parent": NSNull(), "max_model_len": args.maxModelLen, "permission": [Any]()]
            return Response(status: 200, body: json(["object": "list", "data": [card]]))
        case ("POST", "/v1/chat/completions"):
            if faults.contains(.engineDead) { return error(500, "EngineDeadError: the engine died", type: "InternalServerError") }
            if rankLost { return error(500, "Worker failed with error 'Connection closed by peer', please check the stack trace above for the root cause", type: "InternalServerError") }
            return chat(body)
        default:
            return Response(status: 404, body: #"{"detail":"Not Found"}"#)
        }
    }

    /// vLLM's error body: nested, `code` the HTTP status (entrypoints/openai/engine/protocol.py v0.28.0:68-76,
    /// built by serve/exception_handling/error_response.py:17-94). The API-key middleware's 401 is the one flat
    /// body (serve/utils/server_utils.py v0.28.0:30-78).
    func error(_ code: Int, _ message: String, type: String, param: String? = nil) -> Response {
        Response(status: code, body: json(["error": ["message": message, "type": type, "param": param ?? NSNull(), "code": code] as [String: Any]]))
    }

    /// The prompt the modelled engine pretends to have read.
    static let promptTokens = 120

    /// What the model produced for one request, before it is sent as one body or as a stream.
    struct Output {
        var reasoning: String?
        var content: String?
        var call: (name: String, arguments: String)?
        var finish = "stop"
        var tokens = 0
        /// Written under structured outputs (tool_choice required or named), not parsed from text.
        var forced = false
    }

    func chat(_ body: Data) -> Response {
        guard let req = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            return error(400, "Invalid JSON body", type: "Bad Request")
        }
        let model = req["model"] as? String ?? ""
        // An empty model is accepted (serve/engine/serving.py v0.28.0:70-75 `_is_model_supported`).
        guard model.isEmpty || model == args.servedName else {
            return error(404, "The model `\(model)` does not exist.", type: "NotFoundError", param: "model")
        }
        let stream = req["stream"] as? Bool ?? false
        if req["stream_options"] != nil, !stream {
            return error(400, "Stream options can only be defined when `stream=True`.", type: "Bad Request")
        }
        let tools = req["tools"] as? [[String: Any]] ?? []
        // With tools, tool_choice defaults to auto (chat_completion/protocol.py v0.28.0:917-918).
        let toolChoice: Any = req["tool_choice"] ?? (tools.isEmpty ? "none" : "auto")
        let named = ((toolChoice as? [String: Any])?["function"] as? [String: Any])?["name"] as? String
        if !tools.isEmpty, (toolChoice as? String) != "none", !args.parsesToolCalls {
            // renderers/online_renderer.py v0.28.0:145-173.
            if (toolChoice as? String) == "auto" {
                return error(400, "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set", type: "BadRequestError")
            }
            let desc = named.map { "function \"\($0)\"" } ?? "\"\(toolChoice)\""
            return error(400, "tool_choice=\(desc) requires --tool-call-parser to be set", type: "BadRequestError")
        }
        if let named, !tools.contains(where: { ($0["function"] as? [String: Any])?["name"] as? String == named }) {
            return error(400, "The tool specified in `tool_choice` does not match any of the specified `tools`", type: "BadRequestError")
        }
        // Without max_tokens a chat completion may use the rest of the context (serve/utils/api_utils.py
        // v0.28.0:169-205 `get_max_tokens`: min(max_model_len - prompt, …)); 16 is /v1/completions' default only.
        let maxTokens = (req["max_completion_tokens"] ?? req["max_tokens"]) as? Int ?? (args.maxModelLen - Self.promptTokens)
        let out = output(req, tools: tools, forced: (toolChoice as? String) == "required" || named != nil, named: named, maxTokens: maxTokens)
        let id = "chatcmpl-\(Self.randomHex(16))"
        let usage = ["prompt_tokens": Self.promptTokens, "total_tokens": Self.promptTokens + out.tokens, "completion_tokens": out.tokens]
        if stream {
            let includeUsage = (req["stream_options"] as? [String: Any])?["include_usage"] as? Bool ?? false
            let userTurns = (req["messages"] as? [[String: Any]] ?? []).filter { $0["role"] as? String == "user" }.count
            return Response(status: 200, body: sse(out, id: id, usage: includeUsage ? usage : nil, named: named != nil, userTurns: userTurns),
                            contentType: "text/event-stream; charset=utf-8")
        }
        // The whole body as vLLM 0.28 dumps it (a full model_dump: unset fields as null; `tool_calls` left out when
        // empty by DeltaMessage/ChatMessage's wrap serializer), as read off the real engine by RealEngineTests.
        let null = NSNull()
        var message: [String: Any] = ["role": "assistant", "content": out.content ?? null, "refusal": null, "annotations": null,
                                      "audio": null, "function_call": null, reasoningField: out.reasoning ?? null]
        if let call = out.call {
            message["tool_calls"] = [["id": "chatcmpl-tool-\(Self.randomHex(16))", "type": "function",
                                      "function": ["name": call.name, "arguments": call.arguments]]]
        }
        var fullUsage: [String: Any] = usage
        fullUsage["prompt_tokens_details"] = null
        if args.reasoningParser != nil { fullUsage["completion_tokens_details"] = ["reasoning_tokens": out.reasoning == nil ? 0 : out.tokens - 20] }
        var response: [String: Any] = [
            "id": id, "object": "chat.completion", "created": Int(Date().timeIntervalSince1970), "model": args.servedName,
            "choices": [["index": 0, "message": message, "logprobs": null, "finish_reason": out.finish, "stop_reason": null,
                         "token_ids": null, "routed_experts": null]],
            "usage": fullUsage, "system_fingerprint": fingerprint ?? null, "service_tier": null,
        ]
        for k in ["prompt_logprobs", "prompt_token_ids", "prompt_text", "kv_transfer_params", "ec_transfer_params", "metrics"] { response[k] = null }
        return Response(status: 200, body: json(response))
    }

    /// What the modelled model says: a weather call when offered the tool, an answer after the tool's result.
    func output(_ req: [String: Any], tools: [[String: Any]], forced: Bool, named: String?, maxTokens: Int) -> Output {
        let messages = req["messages"] as? [[String: Any]] ?? []
        let reasoning = "The user wants the weather; I need to call get_weather with the city they named."
        // Reasoning lands in its field only through a reasoning parser; the wrong-parser fault leaves it in content.
        let reasons = args.reasoningParser != nil && !faults.contains(.wrongParser)
        var out = Output()
        if let last = messages.last, last["role"] as? String == "tool" {
            let result = (last["content"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } ?? [:]
            let place = result["location"] as? String ?? "the city"
            let temp = result["temp_c"].map { "\($0)°C" } ?? "unknown temperature"
            let condition = result["condition"] as? String ?? "unknown conditions"
            out.content = "It is \(temp) and \(condition) in \(place) right now."
            out.tokens = 24
            if maxTokens < out.tokens { out.content = "It is"; out.finish = "length"; out.tokens = maxTokens }
            return out
        }
        guard !tools.isEmpty, (req["tool_choice"] as? String) != "none" else {
            out.content = reasons ? "Hello! How can I help?" : "<think>A greeting.</think>\nHello! How can I help?"
            if reasons { out.reasoning = "A greeting." }
            out.tokens = 12
            return out
        }
        // The named tool, else the one the user's last message names, else the first.
        let userText = messages.last(where: { $0["role"] as? String == "user" })?["content"] as? String ?? ""
        func toolName(_ t: [String: Any]) -> String { (t["function"] as? [String: Any])?["name"] as? String ?? "" }
        let chosen = tools.first { toolName($0) == named } ?? tools.first { let n = toolName($0); return !n.isEmpty && userText.contains(n) } ?? tools[0]
        let name = toolName(chosen).isEmpty ? "tool" : toolName(chosen)
        let location = Self.city(in: userText)
        var arguments = "{\"location\": \"\(location)\"}"
        if faults.contains(.malformedArguments) { arguments = "{\"location\": \"\(location)\", \"unit\": celsius" }
        if forced {
            // Structured outputs write the call directly, without reasoning (parser/abstract_parser.py v0.28.0:515-524).
            out.call = (name, arguments)
            out.forced = true
            out.content = ""
            out.tokens = 12
            out.finish = named == nil ? "tool_calls" : "stop"
            return out
        }
        out.tokens = Self.reasoningTokens + 20
        if maxTokens < Self.reasoningTokens {
            // The budget runs out while the model is still reasoning: no tool call at all.
            out.finish = "length"
            out.tokens = maxTokens
            if reasons { out.reasoning = String(reasoning.prefix(40)) } else { out.content = "<think>" + String(reasoning.prefix(40)) }
        } else if faults.contains(.wrongParser) {
            // The wrong tool parser: the call stays text in content, with the reasoning.
            out.content = "<think>\(reasoning)</think>\nI will call \(name) for \(location): <tool_call>{\"name\": \"\(name)\", \"arguments\": \(arguments)}</tool_call>"
        } else {
            out.call = (name, arguments)
            out.finish = "tool_calls"
            if reasons { out.reasoning = reasoning }
        }
        return out
    }

    /// The output as vLLM streams it (chat_completion/serving.py v0.28.0:431-886, every event
    /// `data: {chunk.model_dump_json(exclude_unset=True)}`): the role chunk; reasoning and content deltas; a call's
    /// id, type and name first, then its arguments in pieces (tool_parsers/hermes_tool_parser.py:241-268; a forced
    /// call's first delta carries the first piece, tool_parsers/streaming.py:83-124); the finish chunk, with the
    /// fingerprint unless a usage chunk (choices empty) follows; `data: [DONE]`. The stream-markup fault sends the
    /// call as content text, as a parser whose streaming path fails does (vllm#39056).
    func sse(_ out: Output, id: String, usage: [String: Int]?, named: Bool, userTurns: Int) -> String {
        let created = Int(Date().timeIntervalSince1970)
        var events: [String] = []
        func chunk(_ choices: [[String: Any]], extra: [String: Any] = [:]) {
            var c: [String: Any] = ["id": id, "object": "chat.completion.chunk", "created": created, "model": args.servedName, "choices": choices]
            for (k, v) in extra { c[k] = v }
            events.append("data: \(json(c))\n\n")
        }
        func delta(_ d: [String: Any]) { chunk([["index": 0, "delta": d, "logprobs": NSNull(), "finish_reason": NSNull(), "token_ids": NSNull()]]) }
        /// Text in pieces of about one word, as tokens come.
        func pieces(_ text: String) -> [String] {
            var out: [String] = [], current = ""
            for ch in text { current.append(ch); if ch == " " { out.append(current); current = "" } }
            if !current.isEmpty { out.append(current) }
            return out
        }
        chunk([["index": 0, "delta": ["role": "assistant", "content": ""], "logprobs": NSNull(), "finish_reason": NSNull()]],
              extra: ["prompt_token_ids": NSNull(), "prompt_text": NSNull()])
        for p in pieces(out.reasoning ?? "") { delta([reasoningField: p]) }
        var content = out.content ?? ""
        var call = out.call
        if let c = call, faults.contains(.streamMarkup) || faults.contains(.lateMarkup) && userTurns >= 7 {
            let location = (try? JSONSerialization.jsonObject(with: Data(c.arguments.utf8)) as? [String: Any])?["location"] as? String ?? ""
            content += "<tool_call>\n<function=\(c.name)>\n<parameter=location>\n\(location)\n</parameter>\n</function>\n</tool_call>"
            call = nil
        }
        for p in pieces(content) { delta(["content": p]) }
        if let c = call {
            let callID = "chatcmpl-tool-\(Self.randomHex(16))"
            let argPieces = pieces(c.arguments)
            if out.forced {
                // A required call's later deltas say `"name": null` (tool_parsers/streaming.py v0.28.0:207-219).
                delta(["tool_calls": [["id": callID, "type": "function", "index": 0, "function": ["name": c.name, "arguments": argPieces.first ?? ""]]]])
                for p in argPieces.dropFirst() {
                    delta(["tool_calls": [["index": 0, "function": named ? ["arguments": p] : ["name": NSNull(), "arguments": p] as [String: Any]]]])
                }
            } else {
                // qwen3_coder (sous's parser) sends no `content` beside the call, as read off the real engine; hermes does.
                delta(["tool_calls": [["id": callID, "type": "function", "index": 0, "function": ["name": c.name]]]])
                for p in argPieces { delta(["tool_calls": [["index": 0, "function": ["arguments": p]]]]) }
            }
        }
        // finish_reason tool_calls once a call was streamed, unless one tool was named (serving.py v0.28.0:730-757).
        let finish = call != nil && !named ? "tool_calls" : (out.finish == "tool_calls" ? "stop" : out.finish)
        chunk([["index": 0, "delta": [String: Any](), "logprobs": NSNull(), "finish_reason": finish, "stop_reason": NSNull(), "token_ids": NSNull()]],
              extra: usage == nil ? ["system_fingerprint": fingerprint ?? NSNull()] : [:])
        if let usage { chunk([], extra: ["usage": usage, "system_fingerprint": fingerprint ?? NSNull()]) }
        events.append("data: [DONE]\n\n")
        return events.joined()
    }

    /// The capitalised word after "in" ("What is the weather in Zurich?" → Zurich).
    static func city(in text: String) -> String {
        let words = text.split(whereSeparator: { !$0.isLetter })
        if let i = words.firstIndex(where: { $0.lowercased() == "in" }), i + 1 < words.count { return String(words[i + 1]) }
        return "Zurich"
    }

    static func randomHex(_ n: Int) -> String {
        String((0..<n).map { _ in "0123456789abcdef".randomElement()! })
    }

    var metrics: String {
        """
        # HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
        # TYPE vllm:cache_config_info gauge
        vllm:cache_config_info{block_size="16",cache_dtype="\(args.kvCacheDtype)",enable_prefix_caching="True",gpu_memory_utilization="\(args.gpuMemoryUtilization)",engine="0",model_name="\(args.servedName)"} 1.0
        # HELP vllm:num_requests_running Number of requests in model execution batches.
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{engine="0",model_name="\(args.servedName)"} \(Double(running))
        # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
        # TYPE vllm:num_requests_waiting gauge
        vllm:num_requests_waiting{engine="0",model_name="\(args.servedName)"} 0.0

        """
    }

    func json(_ object: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }
}
