import Foundation

/// One thing a watch saw or did: a line for a person (`text`), or a JSON line.
public struct WatchEvent: Sendable, Encodable {
    public enum Kind: String, Sendable, Encodable { case failure, trigger, recovery, healthy }
    public var event: Kind
    /// failure: which consecutive failure, and what failed.
    public var consecutive: Int?
    public var problem: String?
    /// trigger and recovery: which trigger; recovery: the command's exit status and the back-off after it.
    public var trigger: Int?
    public var exit_status: Int32?
    public var backoff_s: Double?

    public func text(failures: Int) -> String {
        switch event {
        case .failure: return "fail \(consecutive ?? 0)/\(failures): \(problem ?? "")"
        case .trigger: return "running the recovery command (trigger \(trigger ?? 0))"
        case .recovery: return "recovery command exited \(exit_status ?? -1); backing off \(Duration.seconds(backoff_s ?? 0))"
        case .healthy: return "healthy again"
        }
    }
}

/// Watches an endpoint from outside: /health and a tiny real completion (a wedged NCCL link keeps /health
/// green), and after N consecutive failures runs the recovery action once, then backs off. One trigger at a time.
public struct Watchdog: Sendable {
    public var probe: HTTPProbe
    public var baseURL: String
    public var model: String
    public var key: Secret?
    public var interval: Duration
    public var failures: Int
    public var probeTimeout: Duration
    /// First wait after a trigger; doubles after each further trigger, up to 10 minutes.
    public var backoff: Duration
    public var log: @Sendable (WatchEvent) -> Void
    /// The recovery action (the user's command); returns its exit status.
    public var recover: @Sendable () async -> Int32

    public init(probe: HTTPProbe, baseURL: String, model: String, key: Secret?, interval: Duration, failures: Int, probeTimeout: Duration,
                backoff: Duration, log: @escaping @Sendable (WatchEvent) -> Void, recover: @escaping @Sendable () async -> Int32) {
        self.probe = probe
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.model = model
        self.key = key
        self.interval = interval
        self.failures = failures
        self.probeTimeout = probeTimeout
        self.backoff = backoff
        self.log = log
        self.recover = recover
    }

    /// Watches the node's server at `host` and `port` (a name, an IPv4 or an IPv6 address).
    public init(probe: HTTPProbe, host: String, port: Int, model: String, key: Secret?, interval: Duration, failures: Int, probeTimeout: Duration,
                backoff: Duration, log: @escaping @Sendable (WatchEvent) -> Void, recover: @escaping @Sendable () async -> Int32) {
        self.init(probe: probe, baseURL: Endpoint.baseURL(host: host, port: port), model: model, key: key, interval: interval, failures: failures,
                  probeTimeout: probeTimeout, backoff: backoff, log: log, recover: recover)
    }

    /// One probe: nil when healthy, else what failed. Each request ends by `probeTimeout` (the probe's deadline).
    public func check() async -> String? {
        let h: HTTPResponse
        do { h = try await probe.get(baseURL + "/health", bearer: nil, timeout: probeTimeout) } catch { return "/health failed: \(error)" }
        guard h.status == 200 else { return "/health \(h.status)" }
        let c: HTTPResponse
        do {
            c = try await probe.post(baseURL + "/v1/chat/completions", json: AgentChecks.pingRequest(model: model), bearer: key, timeout: probeTimeout)
        } catch let e as URLSessionProbe.Failure where e.kind != .timedOut {
            return "completion failed: \(e)"
        } catch {
            return "no completion within \(probeTimeout) (/health is 200: a wedged engine)"
        }
        return c.status == 200 ? nil : "completion HTTP \(c.status)"
    }

    /// Runs until `until` (forever when nil); returns how many times recovery ran.
    public func run(until: ContinuousClock.Instant? = nil) async -> Int {
        var consecutive = 0, triggers = 0
        var wait = backoff
        while until.map({ ContinuousClock.now < $0 }) ?? true {
            if let problem = await check() {
                consecutive += 1
                log(WatchEvent(event: .failure, consecutive: consecutive, problem: problem))
                if consecutive >= failures {
                    triggers += 1
                    log(WatchEvent(event: .trigger, trigger: triggers))
                    let status = await recover()
                    log(WatchEvent(event: .recovery, trigger: triggers, exit_status: status, backoff_s: wait.seconds))
                    consecutive = 0
                    try? await Task.sleep(for: until.map { min(wait, max(.zero, $0 - ContinuousClock.now)) } ?? wait)
                    wait = min(wait * 2, .seconds(600))
                    continue
                }
            } else {
                if consecutive > 0 { log(WatchEvent(event: .healthy)) }
                consecutive = 0
                wait = backoff
            }
            try? await Task.sleep(for: interval)
        }
        return triggers
    }
}
