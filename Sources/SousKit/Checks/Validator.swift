import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Runs the agent checks against an endpoint, in the seed's order.
public struct Validator: Sendable {
    public var probe: HTTPProbe
    public var baseURL: String
    public var model: String
    public var key: Secret?
    public var sampling: [(String, Double)]
    /// When set, the completion's system_fingerprint must show tp<N>.
    public var tensorParallel: Int?
    public var timeout: Duration

    public init(probe: HTTPProbe, baseURL: String, model: String, key: Secret?, sampling: [(String, Double)] = [],
                tensorParallel: Int? = nil, timeout: Duration = .seconds(120)) {
        self.probe = probe
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.model = model
        self.key = key
        self.sampling = sampling
        self.tensorParallel = tensorParallel
        self.timeout = timeout
    }

    var v1: String { baseURL.hasSuffix("/v1") ? baseURL : baseURL + "/v1" }

    /// Every check's verdict; a transport failure (refused, timed out) becomes a failed check, not a throw.
    public func run() async -> [CheckResult] {
        var results: [CheckResult] = []
        func failed(_ name: String, _ error: Error) -> CheckResult {
            CheckResult(name: name, passed: false, detail: "\(error)", diagnosis: "the endpoint did not answer in \(timeout): is the engine up (GET /health)? a wedged engine keeps /health green but never answers completions")
        }
        do {
            results.append(AgentChecks.modelList(try await probe.get(v1 + "/models", bearer: key, timeout: timeout), model: model))
            if key != nil { results.append(AgentChecks.authEnforced(try await probe.get(v1 + "/models", bearer: nil, timeout: timeout))) }
        } catch { results.append(failed("model list", error)); return results }
        let call: HTTPResponse
        do {
            call = try await probe.post(v1 + "/chat/completions", json: AgentChecks.toolCallRequest(model: model, sampling: sampling), bearer: key, timeout: timeout)
        } catch { results.append(failed("tool call", error)); return results }
        if let n = tensorParallel { results.append(AgentChecks.fingerprint(call, tensorParallel: n)) }
        results.append(AgentChecks.toolCall(call))
        results.append(AgentChecks.jsonArguments(call))
        guard let id = AgentChecks.toolCallID(call) else {
            results.append(CheckResult(name: "tool-result round trip", passed: false, detail: "skipped: no tool call id", diagnosis: "fix the tool call first"))
            return results
        }
        do {
            let r = try await probe.post(v1 + "/chat/completions", json: AgentChecks.roundTripRequest(model: model, sampling: sampling, toolCallID: id), bearer: key, timeout: timeout)
            results.append(AgentChecks.roundTrip(r))
        } catch { results.append(failed("tool-result round trip", error)) }
        return results
    }
}

/// HTTP over URLSession (FoundationNetworking on Linux). The key goes only into the Authorization header.
public struct URLSessionProbe: HTTPProbe {
    public init() {}

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    func send(_ request: URLRequest) async throws -> HTTPResponse {
        do {
            let (data, response) = try await URLSession.shared.data(for: request)
            return HTTPResponse(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: data)
        } catch let e as URLError {
            let what: String
            switch e.code {
            case .timedOut: what = "timed out"
            case .cannotConnectToHost: what = "connection refused"
            case .cannotFindHost: what = "unknown host"
            default: what = e.localizedDescription
            }
            throw Failure(description: "\(request.httpMethod ?? "GET") \(request.url?.absoluteString ?? ""): \(what)")
        }
    }

    func request(_ url: String, bearer: Secret?, timeout: Duration) throws -> URLRequest {
        guard let u = URL(string: url) else { throw Failure(description: "not a URL: \(url)") }
        var r = URLRequest(url: u)
        r.timeoutInterval = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        if let bearer { r.setValue("Bearer \(bearer.reveal())", forHTTPHeaderField: "Authorization") }
        return r
    }

    public func get(_ url: String, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse {
        try await send(try request(url, bearer: bearer, timeout: timeout))
    }

    public func post(_ url: String, json: Data, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse {
        var r = try request(url, bearer: bearer, timeout: timeout)
        r.httpMethod = "POST"
        r.httpBody = json
        r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        return try await send(r)
    }
}
