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
        return try await transport.with(inv.head) { head in
            try await ClusterLock.acquire(head, what: "rotate-key")
            do {
                let result = try await rotate(old: old, new: new)
                await ClusterLock.release(head)
                return result
            } catch {
                await ClusterLock.release(head)
                throw error
            }
        }
    }

    func runner(_ key: Secret) -> UpRunner {
        UpRunner(deployment: deployment, transport: transport, probe: probe, key: key, reporter: reporter, engineTimeout: engineTimeout)
    }

    func rotate(old: Secret, new: Secret) async throws -> UpResult {
        let result: UpResult
        do {
            result = try await runner(new).run()
        } catch {
            let interrupted = Interruption.shared.requested != nil
            reporter.step("restore", .changed, "the old key: " + (interrupted ? "interrupted" : "the engine did not verify with the new one"), elapsed: .zero)
            // Putting the old key back is what an interruption asks for: not interruptible itself.
            var back = runner(old)
            back.interruptible = false
            _ = try? await back.run()
            if interrupted { try Interruption.shared.check("rotate-key", state: "the old key is back") }
            throw Failed(message: "the engine did not verify with the new key; the old key is back: \((error as? SousFailure)?.message ?? "\(error)")",
                         hint: "sous up --recipe \(deployment.recipe.name) --inventory \(deployment.inventory.file)")
        }
        let url = "http://\(deployment.inventory.head.host):\(deployment.inventory.port)/v1/models"
        let withOld = try await probe.get(url, bearer: old, timeout: .seconds(10))
        guard withOld.status == 401 else {
            throw Failed(message: "the old key still answers \(withOld.status) on /v1/models", hint: "check VLLM_API_KEY in \(NodePaths.envFile) on \(deployment.inventory.head.name)")
        }
        reporter.step("old key", .ok, "answered 401 on /v1/models", elapsed: .zero)
        return result
    }
}
