import ArgumentParser
import Foundation
import SousKit

struct FitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit",
        abstract: "Will it fit? The memory budget per rank from the checkpoint, before anything starts.",
        discussion: """
        Weights per rank (the safetensors index's total size ÷ tensor-parallel size), KV bytes per token per rank \
        (2 × attention layers × ceil(KV heads ÷ ranks) × head dim × KV dtype; for hybrid Mamba models only the \
        attention layers, plus a fixed recurrent state per sequence), the budget (total memory × the memory \
        fraction, minus a stated 4 GiB allowance for activations and CUDA graphs), the KV tokens that fit, the \
        context each of max_num_seqs sequences gets, and the OS headroom. Reads the checkpoint from the head's HF \
        cache, or from --checkpoint DIR (config.json and model.safetensors.index.json) with the profile's memory. \
        Exit 0 fits, 1 does not fit.
        """
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Option(help: "A local directory with the checkpoint's config.json and model.safetensors.index.json.")
    var checkpoint: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let d = try deployment.load()
        let ckpt: CheckpointStatus
        if let checkpoint {
            ckpt = try Checkpoint.local(checkpoint, memTotal: d.inventory.profileMemoryBytes)
        } else {
            ckpt = try await ssh.transport(for: d.inventory).with(d.inventory.head) { try await Checkpoint.read($0, repo: HFRepo(d, node: d.inventory.head)) }
        }
        guard let input = ckpt.fit else {
            let why = ckpt.problems.isEmpty ? "has no config.json and model.safetensors.index.json" : "cannot be sized: " + ckpt.problems.joined(separator: "; ")
            throw UsageError("the checkpoint \(d.recipe.model) on \(checkpoint ?? d.inventory.head.name) \(why)",
                             hint: checkpoint == nil ? "sous model --recipe \(d.recipe.file) --inventory \(d.inventory.file) --fetch, or pass --checkpoint DIR" : nil)
        }
        let r = Fit.compute(input, tp: d.recipe.tensorParallelSize, engine: d.engine, profile: d.inventory.profile)
        var report = r
        if let m = Fit.clientMessage(r, clientContext: d.recipe.clientContext) { report.messages.append(m) }
        print(json ? encodeJSON(report) : Fit.text(report), terminator: "")
        if r.verdict == .doesNotFit { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}
