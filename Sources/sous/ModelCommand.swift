import ArgumentParser
import Foundation
import SousKit

struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Is the recipe's checkpoint on every node, complete and the same? With --fetch, make it so.",
        discussion: """
        Per node: present / missing / incomplete, the revision (refs/main or the recipe's `revision`), the size, \
        and the quantization the checkpoint declares (config.json quantization_config, compression_config, or \
        ModelOpt's hf_quant_config.json — what vLLM reads when the recipe says `quantization: auto`). Complete \
        means config.json, a tokenizer, and every shard the safetensors index names, each as long as its own \
        safetensors header says (a truncated shard is found without hashing 70 GB). --verify also hashes every \
        file and compares it with its blob's name (the hub names blobs by content: sha256 for weights, git sha1 \
        for the rest), which reads every byte.

        --fetch downloads it once, on the head, with the Hugging Face CLI on the node (or `hf` inside the \
        pinned image when the node has none), then copies it to the other nodes over their interconnect \
        addresses with rsync (the head logs in to the workers with its own key; sous gives it a known_hosts \
        file with the host keys sous verified; when it cannot log in, or a node lacks rsync, the bytes stream through \
        sous instead). Files proven broken are removed and fetched again; a run that \
        was interrupted resumes. For a gated model export the variable the inventory's hf_token_env names \
        (default HF_TOKEN): the token reaches the head only as a 0600 file, read through HF_TOKEN_PATH.

        Exit 0 when every node holds the same complete checkpoint, 1 when not (or a transfer failed), \
        2 for a gated model without a usable token, 3 when a node is unreachable.

          sous model --recipe nemotron-3-super-nvfp4 --inventory inventory/sim.yaml --fetch
        """
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Flag(help: "Download and copy the checkpoint where it is missing or incomplete.")
    var fetch = false

    @Flag(help: "Also hash every file and compare it with its blob's name (sha256 for weights, git sha1 for the rest): reads every byte.")
    var verify = false

    @Flag(help: "Print JSON (progress goes to stderr).")
    var json = false

    func run() async throws {
        Signals.stopAtSafePoints()
        let d = try deployment.load()
        let inv = d.inventory
        let reporter = LineReporter(toStderr: true)
        let sync = ModelSync(deployment: d, hfToken: hfToken(inv), onProgress: { reporter.progress($0) })
        let fetch = self.fetch, verify = self.verify
        let results = try await withSessions(inv.nodes, transport: ssh.transport(for: inv), reporter: SilentReporter()) { sessions in
            guard fetch else { return try await sync.ensure(sessions, fetch: false, verify: verify) }
            // Fetching changes nodes: under the cluster lock, for as long as a download may take.
            return try await ClusterLock.with(sessions[inv.head.name]!, what: "model --fetch", ttl: .seconds(6 * 3600), warn: { Console.warning($0) }) { _ in
                try await sync.ensure(sessions, fetch: true, verify: verify)
            }
        }
        reporter.transfers.finishLine(FileHandle.standardError)
        let head = results.first { $0.node == inv.head.name }!.status
        var problem = sync.inconsistency(results, verify: verify)
        if problem == nil, verify, let unverified = results.first(where: { !$0.status.verified }) {
            problem = StepFailure(step: "model", node: unverified.node, cause: "no file could be checked against its hash (not a Hugging Face cache layout?)", hint: nil, exitCode: .checkFailed)
        }
        if json {
            print(encodeJSON(results), terminator: "")
        } else {
            var rows: [[String]] = []
            for r in results {
                let s = r.status
                let quant: String = s.quantization.map { q in q.method + (q.kvCache.map { ", KV \($0)" } ?? "") } ?? "-"
                rows.append([r.node, s.state.rawValue, s.revision.map { String($0.prefix(12)) } ?? "-", s.state == .missing ? "-" : Human.bytes(s.bytes), quant, r.action ?? ""])
            }
            print(formatTable([["NODE", "STATE", "REVISION", "SIZE", "QUANTIZATION", "DONE"]] + rows), terminator: "")
            for r in results {
                for p in r.status.problems where r.status.state != .present { print("  \(r.node): \(p)") }
            }
            if let q = head.quantization { print("detected: \(Checkpoint.quantizationLine(recipe: d.recipe, detected: q))") }
            if let w = Checkpoint.kvCacheWarning(head.quantization, recipeKVDtype: d.engine.kvCacheDtype) { Console.warning(w) }
            if verify, problem == nil { print("verified: every file on every node matches its hash") }
            if let problem {
                if problem.hint == nil { print("\(problem.node ?? ""): \(problem.cause)") }
                if let hint = problem.hint { print("next: \(hint)") }
            }
        }
        if problem != nil { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}
