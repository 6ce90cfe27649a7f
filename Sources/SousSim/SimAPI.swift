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
            return chat(body)
        default:
            return Response(status: 404, body: #"{"detail":"Not Found"}"#)
        }
    }

    func error(_ code: Int, _ message: String, type: String) -> Response {
        Response(status: code, body: json(["object": "error", "message": message, "type": type, "param": NSNull(), "code": code]))
    }

    func chat(_ body: Data) -> Response {
        guard let req = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            return error(400, "Invalid JSON body", type: "BadRequestError")
        }
        let model = req["model"] as? String ?? ""
        guard model == args.servedName else {
            return error(404, "The model `\(model)` does not exist.", type: "NotFoundError")
        }
        let messages = req["messages"] as? [[String: Any]] ?? []
        let tools = req["tools"] as? [[String: Any]] ?? []
        let maxTokens = req["max_tokens"] as? Int ?? 16
        let toolChoice = req["tool_choice"]
        let reasoning = "The user wants the weather; I need to call get_weather with the city they named."
        let reasons = args.reasoningParser != nil && !faults.contains(.wrongParser)
        var message: [String: Any] = ["role": "assistant", "content": NSNull(), "tool_calls": [Any](), "refusal": NSNull()]
        var finish = "stop"
        var completionTokens = 0

        if let last = messages.last, last["role"] as? String == "tool" {
            let result = (last["content"] as? String).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } ?? [:]
            let place = result["location"] as? String ?? "the city"
            let temp = result["temp_c"].map { "\($0)°C" } ?? "unknown temperature"
            let condition = result["condition"] as? String ?? "unknown conditions"
            message["content"] = "It is \(temp) and \(condition) in \(place) right now."
            completionTokens = 24
            if maxTokens < completionTokens { message["content"] = "It is"; finish = "length"; completionTokens = maxTokens }
        } else if !tools.isEmpty, (toolChoice as? String) != "none" {
            completionTokens = Self.reasoningTokens + 20
            let function = (tools[0]["function"] as? [String: Any]) ?? [:]
            let name = function["name"] as? String ?? "tool"
            let userText = messages.last(where: { $0["role"] as? String == "user" })?["content"] as? String ?? ""
            let location = Self.city(in: userText)
            var arguments = "{\"location\": \"\(location)\"}"
            if faults.contains(.malformedArguments) { arguments = "{\"location\": \"\(location)\", \"unit\": celsius" }
            if maxTokens < Self.reasoningTokens {
                // The budget runs out while the model is still reasoning: no tool call at all.
                finish = "length"
                completionTokens = maxTokens
                if reasons { message[reasoningField] = String(reasoning.prefix(40)) } else { message["content"] = "<think>" + String(reasoning.prefix(40)) }
            } else if args.toolCallParser == nil || !args.enableAutoToolChoice || faults.contains(.wrongParser) {
                // No (or the wrong) tool parser: the call stays text in content.
                message["content"] = (reasons ? "" : "<think>\(reasoning)</think>\n") + "I will call \(name) for \(location): <tool_call>{\"name\": \"\(name)\", \"arguments\": \(arguments)}</tool_call>"
                if reasons { message[reasoningField] = reasoning }
            } else {
                message["tool_calls"] = [["id": "chatcmpl-tool-\(Self.randomHex(16))", "type": "function",
                                          "function": ["name": name, "arguments": arguments]]]
                finish = "tool_calls"
                if reasons { message[reasoningField] = reasoning }
            }
        } else {
            message["content"] = reasons ? "Hello! How can I help?" : "<think>A greeting.</think>\nHello! How can I help?"
            if reasons { message[reasoningField] = "A greeting." }
            completionTokens = 12
        }
        var response: [String: Any] = [
            "id": "chatcmpl-\(Self.randomHex(16))", "object": "chat.completion", "created": Int(Date().timeIntervalSince1970),
            "model": args.servedName,
            "choices": [["index": 0, "message": message, "logprobs": NSNull(), "finish_reason": finish, "stop_reason": NSNull()]],
            "usage": ["prompt_tokens": 120, "completion_tokens": completionTokens, "total_tokens": 120 + completionTokens],
        ]
        response["system_fingerprint"] = fingerprint ?? NSNull()
        return Response(status: 200, body: json(response))
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
        vllm:num_requests_running{engine="0",model_name="\(args.servedName)"} 0.0
        # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
        # TYPE vllm:num_requests_waiting gauge
        vllm:num_requests_waiting{engine="0",model_name="\(args.servedName)"} 0.0

        """
    }

    func json(_ object: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }
}
