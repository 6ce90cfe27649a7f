import ArgumentParser
import SousKit

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Print exactly what each node will run, secrets as [REDACTED].",
        discussion: """
        shell (default): a script per node a person can paste: the 0600 env file, then `docker run … vllm serve …`. \
        The API key line reads the key from your shell ($VLLM_API_KEY or the inventory's api_key_env), so it never \
        appears on a command line.

        config: the same, with the shared flags in a `vllm serve --config` YAML file and only per-node flags \
        (--node-rank, --headless, --host/--port on the head) on the command line.

        json: argv, env (key redacted) and the config YAML per node, for scripts.

        --checkpoint DIR (a local copy of the checkpoint) adds the quantization vLLM will detect from it.

        Example:
          sous render --recipe recipes/nemotron-3-super-nvfp4.yaml --inventory inventory/two-sparks.yaml
        """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case shell, config, json }

    @OptionGroup var deployment: DeploymentOptions

    @Option(help: "Only this node (by its inventory name).")
    var node: String?

    @Option(help: "shell, config or json.")
    var format: Format = .shell

    @Option(help: "A local copy of the checkpoint (its config.json, hf_quant_config.json): say what quantization vLLM will detect.")
    var checkpoint: String?

    @Flag(help: "Render even a combination of flags the image's vLLM is known to get wrong (it is named).")
    var force = false

    func run() throws {
        let d = try deployment.load(allowGroups: true)
        try deployment.refuseKnownBad(d, force: force)
        let renderer = Renderer(d)
        var nodes = try renderer.nodes(form: format == .config ? .config : .flags)
        if let node {
            nodes = nodes.filter { $0.node.name == node }
            if nodes.isEmpty {
                throw UsageError("no node named `\(node)` in \(d.inventory.file)",
                                 hint: "nodes: \(d.inventory.nodes.map(\.name).joined(separator: ", "))")
            }
        }
        if let checkpoint, format != .json {
            let c = try Checkpoint.local(checkpoint, memTotal: 0)
            print("# \(Checkpoint.quantizationLine(recipe: d.recipe, detected: c.quantization))")
            if let w = Checkpoint.kvCacheWarning(c.quantization, recipeKVDtype: d.engine.kvCacheDtype) { Console.warning(w) }
        }
        switch format {
        case .shell: print(try RenderReport.shell(d, nodes: nodes), terminator: "")
        case .config: print(try RenderReport.config(d, nodes: nodes, yaml: renderer.configYAML()), terminator: "")
        case .json: print(try RenderReport.json(d, nodes: nodes, configYAML: renderer.configYAML()), terminator: "")
        }
    }
}

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Print the ordered steps `sous up` takes on each node, each with the check that decides whether it is already done."
    )

    @OptionGroup var deployment: DeploymentOptions

    @Option(help: "A local copy of the checkpoint (config.json, model.safetensors.index.json, hf_quant_config.json): show the detected quantization and the fit verdict.")
    var checkpoint: String?

    @Flag(help: "Print the steps as JSON.")
    var json = false

    @Flag(help: "Plan even a combination of flags the image's vLLM is known to get wrong (it is named).")
    var force = false

    func run() throws {
        let d = try deployment.load(allowGroups: true)
        try deployment.refuseKnownBad(d, force: force)
        let local = try checkpoint.map { try Checkpoint.local($0, memTotal: d.inventory.profileMemoryBytes) }
        let steps = UpPlan.steps(d, checkpoint: local)
        print(json ? encodeJSON(steps) : UpPlan.text(d, steps: steps), terminator: "")
    }
}
