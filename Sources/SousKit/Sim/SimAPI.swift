import Foundation

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

/// SHA-256 of a string, hex (the sim's stand-in for vLLM's config hash).
public func sha256Hex(_ text: String) -> String {
    var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
        0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
        0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
        0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]
    var data = Array(text.utf8)
    let bitLength = UInt64(data.count) * 8
    data.append(0x80)
    while data.count % 64 != 56 { data.append(0) }
    for i in (0..<8).reversed() { data.append(UInt8((bitLength >> (UInt64(i) * 8)) & 0xff)) }
    func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
    for chunk in stride(from: 0, to: data.count, by: 64) {
        var w = [UInt32](repeating: 0, count: 64)
        for i in 0..<16 {
            w[i] = (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(data[chunk + i * 4 + $1]) }
        }
        for i in 16..<64 {
            let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        for i in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        h = [h[0] &+ a, h[1] &+ b, h[2] &+ c, h[3] &+ d, h[4] &+ e, h[5] &+ f, h[6] &+ g, h[7] &+ hh]
    }
    return h.map { String(format: "%08x", $0) }.joined()
}
