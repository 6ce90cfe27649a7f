import Foundation
import SousKit
import SSH
import Testing

/// Ctrl-C while sous waits on a long remote command that changes nothing half-way (a pull, a probe).
@Suite struct InterruptTests {
    let harness: SSHDHarness
    init() throws { harness = try SSHDHarness(nodes: 1) }

    @Test func ctrlCStopsWaitingForAStoppableCommandAtOnce() async throws {
        let s = try await harness.transport().connect(harness.node(0))
        let stop = Interruption()
        let clock = ContinuousClock(), start = clock.now
        Task { try await Task.sleep(for: .milliseconds(500)); stop.request(SIGINT) }
        do {
            _ = try await s.run(RemoteCommand(["sleep", "600"], timeout: .seconds(900)).stoppable(by: stop))
            Issue.record("the command was not stopped")
        } catch let e as SousFailure {
            #expect(e.exitCode == .interrupted, "\(e.message)")
            #expect(e.message.contains("stopped waiting for `sleep 600`"), "\(e.message)")
        }
        // A hang guard far below the command's 600 s, loose for a loaded machine (measured alone: about 0.5 s).
        #expect(clock.now - start < .seconds(120), "stopped after \(clock.now - start)")
        // A command that is not stoppable is waited for (the same interruption is still requested).
        #expect(try await s.run(RemoteCommand(["sh", "-c", "sleep 1; echo done"], timeout: .seconds(10))).stdoutText == "done\n")
        await s.close()
    }
}
