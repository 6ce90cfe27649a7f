import Foundation

/// The rows of the seed's gotchas table, and which one a set of check results points at.
public enum Gotcha: String, Sendable, CaseIterable, Encodable {
    case unauthorized, modelNotFound, slashInModelID, lengthTruncation, toolParser, reasoningLeak, argumentsNotJSON
    case repeatedToolCall, forcedQuantization, reverseProxy

    public var symptom: String {
        switch self {
        case .unauthorized: return "`jq: Cannot iterate over null` on /v1/models"
        case .modelNotFound: return "model not found / wrong model in OpenCode"
        case .slashInModelID: return "`/` in the model id rejected"
        case .lengthTruncation: return "finish_reason \"length\", no tool call"
        case .toolParser: return "tool call described in prose, tool_calls null"
        case .reasoningLeak: return "reasoning text inside tool arguments or content"
        case .argumentsNotJSON: return "arguments not parseable JSON"
        case .repeatedToolCall: return "the agent repeats the same tool call"
        case .forcedQuantization: return "quant/kernel error at startup"
        case .reverseProxy: return "endpoint works on the node, not via the domain"
        }
    }
    public var cause: String {
        switch self {
        case .unauthorized: return "401: missing or wrong Authorization; the server returned {\"error\": …} with no data"
        case .modelNotFound: return "the client's models key differs from --served-model-name"
        case .slashInModelID: return "Claude Code cannot use a served name with `/` (OpenCode can)"
        case .lengthTruncation: return "reasoning ate the output budget"
        case .toolParser: return "the tool parser is not active or wrong"
        case .reasoningLeak: return "the reasoning parser is misconfigured"
        case .argumentsNotJSON: return "a genuine parser/model mismatch"
        case .repeatedToolCall: return "the tool-result turn is not consumed"
        case .forcedQuantization: return "a forced --quantization fights the checkpoint"
        case .reverseProxy: return "the reverse proxy does not forward /v1/* or the POST body"
        }
    }
    public var fix: String {
        switch self {
        case .unauthorized: return "send Authorization: Bearer $VLLM_API_KEY with the cluster's key"
        case .modelNotFound: return "key the client's model exactly by the served name (sous client opencode writes it)"
        case .slashInModelID: return "for Claude Code, alias the served name without `/`"
        case .lengthTruncation: return "raise max_tokens (2048–4096) and the client's output limit"
        case .toolParser: return "check --enable-auto-tool-choice and the recipe's --tool-call-parser in the startup log (sous audit)"
        case .reasoningLeak: return "use the model's prescribed --reasoning-parser; content and reasoning must be separate"
        case .argumentsNotJSON: return "re-run; if it persists, check the parser against the model card and file upstream"
        case .repeatedToolCall: return "run the round-trip check (sous validate) and check the tool_call_id echo"
        case .forcedQuantization: return "drop --quantization; let vLLM read it from the checkpoint"
        case .reverseProxy: return "test through the proxy explicitly; fix its location block for /v1/ and request bodies"
        }
    }
}

public enum Doctor {
    /// Which rows the evidence points at. `viaProxy` are the same checks through the public URL, when given.
    public static func diagnose(direct: [CheckResult], viaProxy: [CheckResult]?, audit: [Finding], servedName: String) -> [Gotcha] {
        var found: [Gotcha] = []
        func add(_ g: Gotcha) { if !found.contains(g) { found.append(g) } }
        for r in direct where !r.passed {
            let d = (r.diagnosis ?? "") + " " + r.detail
            switch r.name {
            case "model list": add(d.contains("401") ? .unauthorized : .modelNotFound)
            case "tool call", "JSON arguments", "tool-result round trip":
                if d.contains("output budget") || d.contains("finish_reason length") { add(.lengthTruncation) }
                else if d.contains("reasoning") { add(.reasoningLeak) }
                else if d.contains("prose") { add(.toolParser) }
                else if d.contains("not parseable JSON") { add(.argumentsNotJSON) }
                else if d.contains("again") { add(.repeatedToolCall) }
                else if d.contains("401") { add(.unauthorized) }
                else if d.contains("model not found") { add(.modelNotFound) }
            default: break
            }
        }
        if audit.contains(where: { $0.kind == .drift && $0.text.contains("--quantization") }) { add(.forcedQuantization) }
        if let viaProxy, direct.allSatisfy(\.passed), viaProxy.contains(where: { !$0.passed }) { add(.reverseProxy) }
        if servedName.contains("/") { add(.slashInModelID) }
        return found
    }
}
