import Foundation
import Logging
import Testing
@testable import SousKit

/// The runners against a scripted cluster: no root, no SSH, every remote command a value.
@Suite struct RunnerTests {
    @Test func aHealthyClusterChangesNothingAndVerifies() async throws {
        let c = try FakeCluster()
        try c.converge()
        let result = try await c.up().run()
        #expect(!result.restarted)
        #expect(result.steps.allSatisfy { $0.status == .ok || $0.status == .skipped }, "\(result.steps)")
        #expect(result.fingerprint == "vllm-0.24.0-tp2-1a2b3c4d")
        for node in c.inv.nodes.map(\.name) {
            #expect(c.calls(node, "docker", "run").isEmpty && c.calls(node, "docker", "rm").isEmpty && c.calls(node, "docker", "pull").isEmpty)
            #expect(c.transport[node].uploads.isEmpty)
            #expect(c.transport[node].connections == 1)
        }
        #expect(c.lock == nil, "the lock is released")
        let (entries, warnings) = JournalOps.parse(c.journal)
        #expect(warnings.isEmpty && entries.count == 1 && entries[0].event == .up && entries[0].verifiedImage == c.inv.image)
    }

    @Test func aFreshClusterStartsTheWorkersThenTheHeadAndRunsThePlansSteps() async throws {
        let c = try FakeCluster()
        let result = try await c.up().run()
        #expect(result.restarted)
        #expect(result.steps.map(\.step) + ["journal"] == UpPlan.steps(c.deployment).map(\.id), "up runs what plan prints")
        let runs = c.transport.nodes.values.flatMap { n in n.calls.filter { $0.argv.starts(with: ["docker", "run"]) }.map { _ in n.spec.name } }
        #expect(Set(runs) == ["spark-a", "spark-b"])
        // The worker starts before the head: its `docker run` precedes the head's in time, and the head's rm precedes both.
        let order = result.steps.map(\.step)
        #expect(order.firstIndex(of: "start.workers")! < order.firstIndex(of: "start.head")!)
        #expect(c.transport["spark-a"].uploads.map(\.path) == [NodePaths.envFile])
        let headEnv = String(decoding: c.transport["spark-a"].files[NodePaths.envFile]!, as: UTF8.self)
        let workerEnv = String(decoding: c.transport["spark-b"].files[NodePaths.envFile]!, as: UTF8.self)
        #expect(headEnv.contains(FakeCluster.key.reveal()) && !workerEnv.contains(FakeCluster.key.reveal()), "the key on the head only")
        #expect(c.transport["spark-a"].uploads.allSatisfy { $0.mode == 0o600 })
    }

    /// The engine-ready timeout follows --timeout; another --timeout rewrites the env file for the next start and
    /// restarts nothing (it bounds only a start, and this engine has started).
    @Test func anotherTimeoutRewritesTheReadyTimeoutWithoutARestart() async throws {
        let c = try FakeCluster()
        try c.converge()
        var runner = c.up()
        runner.engineTimeout = .seconds(3600)
        let result = try await runner.run()
        #expect(!result.restarted && result.ready_s == nil && result.first_token_s == nil)
        #expect(result.steps.first { $0.step == "env" }?.status == .changed)
        #expect(result.steps.first { $0.step == "env" }?.detail == "/var/lib/sous/vllm.env (only VLLM_ENGINE_READY_TIMEOUT_S: no restart for it)")
        let env = String(decoding: c.transport["spark-b"].files[NodePaths.envFile]!, as: UTF8.self)
        #expect(env.contains("\nVLLM_ENGINE_READY_TIMEOUT_S=3660\n"), "an hour and a minute: \(env)")
        #expect(c.calls("spark-a", "docker", "run").isEmpty && c.calls("spark-b", "docker", "rm").isEmpty)
    }

    @Test func aSecondUpAfterAFreshOneChangesNothing() async throws {
        let c = try FakeCluster()
        _ = try await c.up().run()
        let before = c.transport.nodes.mapValues { $0.calls.count }
        let second = try await c.up().run()
        #expect(!second.restarted)
        for (name, n) in c.transport.nodes {
            let new = n.calls.dropFirst(before[name]!)
            #expect(!new.contains { $0.argv.starts(with: ["docker", "run"]) || $0.argv.starts(with: ["docker", "rm"]) || $0.argv.starts(with: ["docker", "pull"]) })
        }
    }

    @Test func aFailingGateRollsBackOnOneSessionPerNode() async throws {
        let c = try FakeCluster()
        try c.converge()
        c.proseImages = ["vllm/vllm-openai:v0.25.0"]
        let reporter = RecordingReporter()
        let r = try await c.roll(to: "vllm/vllm-openai:v0.25.0", reporter: reporter).run()
        #expect(r.outcome == .rolledBack)
        #expect(r.cause?.contains("verify: tool call failed on spark-a") == true, "\(r.cause ?? "")")
        #expect(c.ranks["spark-a"]?.image == c.inv.image && c.ranks["spark-b"]?.image == c.inv.image, "the old image runs again")
        #expect(reporter.steps.contains("rollback"))
        for node in c.inv.nodes.map(\.name) { #expect(c.transport[node].connections == 1, "one session per node from lock to release") }
        #expect(c.lock == nil)
        #expect(JournalOps.parse(c.journal).entries.last?.outcome == .rolledBack)
        #expect(JournalOps.parse(c.journal).entries.last?.verifiedImage == c.inv.image)
    }

    /// Ctrl-C while the new image starts: the roll goes back to the old one (its preflight and pull are not
    /// stoppable then: the way back is what the interruption asks for), releases the lock, says so.
    @Test func anInterruptedRollGoesBackAndUnlocks() async throws {
        let c = try FakeCluster()
        try c.converge()
        let interruption = Interruption()
        let reporter = RecordingReporter()
        reporter.onStep = { if $0 == "start.head" { interruption.request(SIGTERM) } }
        let r = try await c.roll(to: "vllm/vllm-openai:v0.25.0", reporter: reporter, interruption: interruption).run()
        #expect(r.outcome == .rolledBack, "\(r.cause ?? "")")
        #expect(r.cause == "interrupted while vllm/vllm-openai:v0.25.0 started")
        #expect(c.ranks.values.allSatisfy { $0.image == c.inv.image && $0.running })
        #expect(c.lock == nil)
    }

    @Test func aGoodRollIsVerified() async throws {
        let c = try FakeCluster()
        try c.converge()
        let r = try await c.roll(to: "vllm/vllm-openai:v0.25.0").run()
        #expect(r.outcome == .verified && r.from == c.inv.image && r.fingerprint_new != nil)
        #expect(c.ranks.values.allSatisfy { $0.image == "vllm/vllm-openai:v0.25.0" && $0.running })
        #expect(r.serving_gap_s != nil)
    }

    @Test func aLockHeldByALiveOperationIsRefusedWithItsHolder() async throws {
        let c = try FakeCluster()
        try c.converge()
        let other = Lease.mine(what: "roll a → b", ttl: .seconds(600))
        c.lock = other.text
        await #expect {
            _ = try await c.up().run()
        } throws: { e in
            guard let held = e as? ClusterLock.Held else { return false }
            return held.message.contains("roll a → b") && held.message.contains("pid \(getpid())")
        }
        #expect(c.lock == other.text, "someone else's lock stays")
        #expect(c.calls("spark-a", "docker").isEmpty && c.calls("spark-b", "docker").isEmpty, "nothing ran")
    }

    @Test(arguments: ["expired", "empty", "garbage", "dead pid"])
    func aStaleLockIsTakenOverWithAWarning(kind: String) async throws {
        let c = try FakeCluster()
        try c.converge()
        var stale = Lease.mine(what: "up", ttl: .seconds(600))
        switch kind {
        case "expired": stale.expires = Date().timeIntervalSince1970 - 1; c.lock = stale.text
        case "empty": c.lock = ""
        case "garbage": c.lock = "root@elsewhere since yesterday\n"
        default: stale.pid = Int32.max - 1; c.lock = stale.text
        }
        let reporter = RecordingReporter()
        _ = try await c.up(reporter: reporter).run()
        #expect(reporter.warnings.contains { $0.hasPrefix("took over a stale cluster lock on spark-a") }, "\(reporter.warnings)")
        #expect(c.lock == nil)
    }

    @Test func aFailureNamesTheStepTheNodeTheCauseAndTheNextCommand() async throws {
        let c = try FakeCluster()
        c.preflightFailure["spark-b"] = "no GPU visible to nvidia-smi"
        do {
            _ = try await c.up().run()
            Issue.record("up passed a node without a GPU")
        } catch let e as StepRunner.StepsFailed {
            #expect(e.failure.step == "preflight" && e.failure.node == "spark-b" && e.failure.cause == "no GPU visible to nvidia-smi")
            #expect(e.message == "preflight failed on spark-b: no GPU visible to nvidia-smi")
            #expect(e.hint == "fix it on spark-b, then run sous up again")
            #expect(e.exitCode == .checkFailed)
        }
        #expect(c.calls("spark-a", "docker", "rm").isEmpty && c.lock == nil)
    }

    @Test func anExitedContainerStopsTheWaitWithItsLog() async throws {
        let c = try FakeCluster()
        c.crashingImages = [c.inv.image]
        do {
            _ = try await c.up().run()
            Issue.record("up passed a crashed engine")
        } catch let e as StepRunner.StepsFailed {
            #expect(e.failure.step == "wait: container running")
            #expect(e.failure.logTail?.contains("ERROR the last line") == true)
            #expect(e.hint?.contains("sous render --recipe nemotron-3-super-nvfp4") == true)
        }
    }

    /// Ctrl-C before each step: exit 130 at that step (or the next safe point), and never a half restart:
    /// either no container was touched, or every rank runs.
    @Test(arguments: ["preflight", "model", "fit", "harden.sshd", "harden.earlyoom", "pull", "env", "start.workers", "start.head", "wait", "verify"])
    func anInterruptionBeforeAStepLeavesNothingHalfDone(step: String) async throws {
        let c = try FakeCluster()
        try c.converge()
        // A changed env file forces a restart, so the start steps have work to interrupt.
        c.transport["spark-b"].files[NodePaths.envFile] = Data("OLD=1\n".utf8)
        let steps = UpRunner.steps(c.deployment).map(\.id)
        let previous = steps[steps.firstIndex(of: step)! - (step == "preflight" ? 0 : 1)]
        let interruption = Interruption()
        let reporter = RecordingReporter()
        if step == "preflight" { interruption.request(SIGINT) } else { reporter.onStep = { if $0 == previous { interruption.request(SIGINT) } } }
        do {
            _ = try await c.up(reporter: reporter, interruption: interruption).run()
            Issue.record("not interrupted")
        } catch let e as SousFailure {
            #expect(e.exitCode == .interrupted, "\(e.message)")
            let stoppedAt = (e as? StepRunner.StepsFailed)?.failure.step
            // start.head is not a safe point: a head left stopped after its workers restarted would be half a restart.
            #expect(stoppedAt == (step == "start.head" ? "wait" : step), "\(e.message)")
        }
        let removed = c.inv.nodes.contains { !c.calls($0.name, "docker", "rm").isEmpty }
        let allRunning = c.inv.nodes.allSatisfy { c.ranks[$0.name]?.running == true }
        #expect(!removed || allRunning, "a half-done restart")
        #expect(c.lock == nil, "the lock is released")
    }

    @Test func verboseLogsEveryCommandAndNeverTheKey() async throws {
        let c = try FakeCluster()
        let lines = LogLines()
        var logger = Logger(label: "test") { _ in CapturingHandler(lines: lines) }
        logger.logLevel = .debug
        var up = c.up()
        up.transport = LoggingTransport(c.transport, logger: logger)
        _ = try await up.run()
        let all = lines.all
        #expect(all.contains { $0.contains("[spark-b]") && $0.contains("docker run -d --name sous-vllm") && $0.contains("→ exit 0 in") })
        #expect(all.contains { $0.contains("upload /var/lib/sous/vllm.env") && $0.contains("mode 600") })
        #expect(!all.contains { $0.contains(FakeCluster.key.reveal()) }, "the key was logged")
        let commands = c.transport.nodes.values.reduce(0) { $0 + $1.calls.count }
        #expect(all.filter { $0.contains("→ exit") }.count == commands, "one line per remote command")
    }
}

final class LogLines: @unchecked Sendable {
    let mutex = NSLock()
    var list: [String] = []
    func add(_ s: String) { mutex.withLock { list.append(s) } }
    var all: [String] { mutex.withLock { list } }
}

struct CapturingHandler: LogHandler {
    let lines: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { lines.add("[\(event.metadata?["node"] ?? "-")] \(event.message)") }
}
