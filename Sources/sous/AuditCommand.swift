import ArgumentParser
import Foundation
import SousKit
import SSH

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Compare what actually runs on every node with what the recipe renders.",
        discussion: """
        Reads each node's engine container (image tag and ID, the whole serve argv, the environment's names) and \
        its hardening state, and names every difference: missing, extra and changed flags (parser names compared \
        through vLLM's per-version aliases), a forced --quantization against the checkpoint's own config, an \
        image other than the pinned one, sampling other than the card's, a client context not below \
        max-model-len, NCCL_IB_GID_INDEX, sshd's oom_score_adj, earlyoom, and the checkpoint (complete on every node, the head's revision and files on the workers). Values of the environment are never \
        printed for the API key. Exit 0 clean, 1 drift, 2 bad input, 3 a node unreachable.
        """
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let d = try deployment.load()
        let audits = try await AuditRunner(deployment: d, transport: ssh.transport(for: d.inventory)).run()
        if json {
            print(encodeJSON(audits), terminator: "")
        } else {
            for a in audits {
                print("\(a.node) (\(a.role))")
                for f in a.findings {
                    print("  \(["ok": "ok   ", "drift": "DRIFT", "note": "note "][f.kind.rawValue]!)  \(f.text)")
                }
            }
            let drifted = audits.filter(\.drift).map(\.node)
            print(drifted.isEmpty ? "clean: every node runs what \(d.recipe.name) renders" : "drift on \(drifted.joined(separator: ", "))")
        }
        if audits.contains(where: \.drift) { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}
