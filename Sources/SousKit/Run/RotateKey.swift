import Foundation

/// Replaces the API key: a new random key in the head's 0600 env file, the engine restarted through the same
/// gated path as `up`/`roll`, the new key verified and the old one answered with 401. If the new engine does not
/// verify, the old key is put back the same way.
public struct KeyRotation: Sendable {
    public var deployment: Deployment
    public var transport: Transport
    public var probe: HTTPProbe
    public var reporter: Reporter
    public var engineTimeout: Duration

    public init(deployment: Deployment, transport: Transport, probe: HTTPProbe, reporter: Reporter, engineTimeout: Duration) {
        self.deployment = deployment
        self.transport = transport
        self.probe = probe
        self.reporter = reporter
        self.engineTimeout = engineTimeout
    }

    /// 32 random bytes as hex, from the system's CSPRNG.
    public static func newKey() -> Secret {
        var g = SystemRandomNumberGenerator()
        return Secret((0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined())
    }

    public struct Failed: SousFailure {
        public var message: String
        public var hint: String?
        public var exitCode: ExitStatus { .checkFailed }
    }

    public func run(old: Secret, new: Secret) async throws -> UpResult {
        let inv = deployment.inventory
        return try await withSessions(inv.nodes, transport: transport, reporter: reporter) { sessions in
            try await ClusterLock.with(sessions[inv.head.name]!, what: "rotate-key", warn: { [reporter] in reporter.warning($0) }) { lock in
                try await rotate(old: old, new: new, sessions: sessions, lock: lock)
            }
        }
    }

    func runner(_ key: Secret, interruptible: Bool = true) -> UpRunner {
        var r = UpRunner(deployment: deployment, transport: transport, probe: probe, key: key, reporter: reporter, engineTimeout: engineTimeout)
        r.interruptible = interruptible
        return r
    }

    func rotate(old: Secret, new: Secret, sessions: [String: NodeSession], lock: ClusterLock.Holder) async throws -> UpResult {
        let result: UpResult
        do {
            result = try await runner(new).run(sessions, lock: lock)
        } catch {
            let interrupted = Interruption.shared.requested != nil
            let why = (error as? SousFailure)?.message ?? "\(error)"
            reporter.step("restore", .changed, "the old key: " + (interrupted ? "interrupted" : "the engine did not verify with the new one"), elapsed: .zero)
            // Putting the old key back is what an interruption asks for: not interruptible itself.
            let restored: Bool
            do { _ = try await runner(old, interruptible: false).run(sessions, lock: lock); restored = true } catch {
                reporter.step("restore", .failed, (error as? SousFailure)?.message ?? "\(error)", elapsed: .zero)
                restored = false
            }
            let up = "sous up --recipe \(deployment.recipe.name) --inventory \(deployment.inventory.file)"
            guard restored else {
                throw Failed(message: "the engine did not verify with the new key, and putting the old key back failed too: \(why)",
                             hint: "neither key is verified: export the key you want in \(deployment.inventory.apiKeyEnv ?? "VLLM_API_KEY") and run `\(up)`")
            }
            if interrupted { try Interruption.shared.check("rotate-key", state: "the old key is back") }
            throw Failed(message: "the engine did not verify with the new key; the old key is back: \(why)", hint: up)
        }
        let withOld = try await probe.get(deployment.inventory.baseURL + "/v1/models", bearer: old, timeout: .seconds(10))
        guard withOld.status == 401 else {
            throw Failed(message: "the old key still answers \(withOld.status) on /v1/models", hint: "check VLLM_API_KEY in \(NodePaths.envFile) on \(deployment.inventory.head.name)")
        }
        reporter.step("old key", .ok, "answered 401 on /v1/models", elapsed: .zero)
        return result
    }
}
