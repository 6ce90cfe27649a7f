import ArgumentParser
import Foundation
import SousKit
import SSH

struct HardenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "harden",
        abstract: "Keep sshd alive under memory pressure on every node (OOMScoreAdjust=-1000, earlyoom).",
        discussion: """
        On each node: a systemd drop-in /etc/systemd/system/ssh.service.d/sous-oom.conf with OOMScoreAdjust=-1000, \
        daemon-reload and a restart of ssh (open sessions survive), verified on the running sshd's \
        /proc/PID/oom_score_adj; earlyoom installed, configured in /etc/default/earlyoom to avoid sshd, systemd, \
        dockerd and containerd and to prefer vLLM, Python and Ray, enabled and active. A second run changes nothing. \
        --check changes nothing and exits 1 when a node has drifted.
        """
    )

    @Option(name: [.customShort("i"), .long], help: "Inventory file.")
    var inventory: String

    @Flag(help: "Report only; exit 1 on drift.")
    var check = false

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var ssh: SSHOptions

    func run() async throws {
        let (inv, warnings) = try InventoryReader.load(path: inventory)
        Console.warnings(warnings)
        let transport = ssh.transport(for: inv)
        let check = self.check
        let outcomes: [NodeOutcome<Harden.NodeReport>]
        if check {
            outcomes = await fanOut(inv.nodes) { node in try await transport.with(node) { try await Harden.run($0, check: true) } }
        } else {
            // Changing nodes: every node reachable, under the cluster lock.
            outcomes = try await withSessions(inv.nodes, transport: transport, reporter: SilentReporter()) { sessions in
                try await ClusterLock.with(sessions[inv.head.name]!, what: "harden", warn: { Console.warning($0) }) { _ in
                    await fanOut(inv.nodes) { try await Harden.run(sessions[$0.name]!, check: false) }
                }
            }
        }
        var reports: [Harden.NodeReport] = [], failed: ExitStatus?
        for o in outcomes {
            switch o.result {
            case .success(let r): reports.append(r)
            case .failure(let e):
                let f = e as? SousFailure
                if failed != .unreachable { failed = f?.exitCode ?? .checkFailed }
                Console.error(f?.message ?? "\(o.node.name): \(e)", hint: f?.hint)
            }
        }
        if json {
            print(encodeJSON(reports), terminator: "")
        } else {
            for r in reports {
                for s in r.steps {
                    let mark = check && s.status == .changed ? "DRIFT  " : ["ok": "ok     ", "changed": "changed", "failed": "FAILED ", "skipped": "skipped"][s.status.rawValue]!
                    print("\(mark) \(r.node.padding(toLength: 10, withPad: " ", startingAt: 0)) \(s.step.padding(toLength: 9, withPad: " ", startingAt: 0)) \(s.detail)")
                }
            }
        }
        if let failed { throw ExitCode(failed.rawValue) }
        if check && reports.contains(where: \.drift) { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}
