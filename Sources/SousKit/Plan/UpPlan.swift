import Foundation

/// One step of bringing a cluster up: where it runs, how sous tells it is already done, and what it changes otherwise.
public struct PlanStep: Sendable, Encodable, Equatable {
    public var id: String
    public var title: String
    public var nodes: [String]
    /// How sous decides the step is already done (`ok`) and skips it.
    public var check: String
    /// What the step does when the check says it is not done (`changed`).
    public var apply: String
    /// What is already known about this step from a local checkpoint (`sous plan --checkpoint DIR`).
    public var now: String?

    public init(id: String, title: String, nodes: [String], check: String, apply: String, now: String? = nil) {
        self.id = id
        self.title = title
        self.nodes = nodes
        self.check = check
        self.apply = apply
        self.now = now
    }
}

/// The ordered steps of `sous up`, as values: `sous plan` prints them, `sous up` runs them.
public enum UpPlan {
    /// The steps, with what a local copy of the checkpoint already says about the model and fit steps.
    public static func steps(_ d: Deployment, checkpoint: CheckpointStatus?) -> [PlanStep] {
        var steps = UpRunner.steps(d).map(\.plan)
        // Several groups: each runs the steps above, then the router comes up in front of them (GroupsRunner).
        if d.isMultiGroup, let router = describe(d).first(where: { $0.id == "router" }) {
            steps.insert(router, at: steps.firstIndex { $0.id == "journal" } ?? steps.endIndex)
        }
        guard let c = checkpoint else { return steps }
        for i in steps.indices {
            if steps[i].id == "model" {
                steps[i].now = Checkpoint.quantizationLine(recipe: d.recipe, detected: c.quantization)
                    + (Checkpoint.kvCacheWarning(c.quantization, recipeKVDtype: d.engine.kvCacheDtype).map { "; warning: \($0)" } ?? "")
            }
            if steps[i].id == "fit", let input = c.fit {
                let r = Fit.compute(input, tp: d.recipe.tensorParallelSize, engine: d.engine, profile: d.inventory.profile)
                steps[i].now = "\(r.verdict.rawValue): \(r.kv_tokens) KV tokens per rank" + (r.messages.isEmpty ? "" : "; " + r.messages.joined(separator: "; "))
            }
        }
        return steps
    }

    /// The steps `sous up` runs, as `sous plan` prints them.
    public static func steps(_ d: Deployment) -> [PlanStep] { steps(d, checkpoint: nil) }

    /// What `sous plan` says about each step of `UpRunner.steps`, by id (the runner's list decides the order).
    static func describe(_ d: Deployment) -> [PlanStep] {
        let inv = d.inventory, recipe = d.recipe
        let all = inv.nodes.map(\.name)
        let workers = d.isMultiGroup ? d.groups.flatMap { $0.nodes.dropFirst().map(\.name) } : inv.ranked.filter { $0.rank > 0 }.map(\.node.name)
        let head = inv.head.name
        /// Each group's head; the inventory's head alone for one group.
        let heads = d.isMultiGroup ? d.groups.map(\.head.name) : [head]
        let apiPorts = Set(d.groups.map(\.port)).sorted().map { ":\($0)" }.joined(separator: ", ")
        let fingerprint = inv.vllmVersion.map { ParserCatalog.builtin.hasSystemFingerprint($0) } ?? true
        let tp = "tp\(recipe.tensorParallelSize)"
        let mem = Int((d.engine.gpuMemoryUtilization * 100).rounded())
        var steps: [PlanStep] = [
            PlanStep(id: "preflight", title: "preflight", nodes: all,
                     check: "SSH with a verified host key; `sudo -n true`; `docker version`; `nvidia-smi -L` shows a GPU; each node reaches the others' interconnect IP\(d.isMultiGroup ? " in its group" : "") on \(inv.interface); free memory ≥ \(mem)% of total",
                     apply: "nothing: read-only, and `up` stops here on the first failure"),
            PlanStep(id: "model", title: "checkpoint \(recipe.model)\(recipe.revision.map { "@\($0)" } ?? "") on every node", nodes: all,
                     check: "in \(inv.hfCache ?? "each user's ~/.cache/huggingface"): config.json, a tokenizer and every shard of the safetensors index, each as long as its header says; the same revision and sizes on every node (vLLM runs with HF_HUB_OFFLINE=1)",
                     apply: "download once on \(head) with the Hugging Face CLI (the node's, else `hf` in the image; \(inv.hfTokenEnv) for gated models, in a 0600 file), then rsync to the others over \(inv.interface); --no-fetch stops instead"),
            PlanStep(id: "fit", title: "the recipe fits the memory budget", nodes: [head],
                     check: "the checkpoint in \(head)'s HF cache: weights per rank + KV for max_model_len \(d.engine.maxModelLen) within \(mem)% of memory (`sous fit`)",
                     apply: "nothing: `up` stops here when it does not fit (unless --force), before pulling or starting anything"),
            PlanStep(id: "harden.sshd", title: "keep sshd alive under memory pressure", nodes: all,
                     check: "/proc/<sshd pid>/oom_score_adj is -1000",
                     apply: "write /etc/systemd/system/ssh.service.d/sous-oom.conf (OOMScoreAdjust=-1000); systemctl daemon-reload; systemctl restart ssh"),
            PlanStep(id: "harden.earlyoom", title: "earlyoom avoids sshd and prefers vLLM", nodes: all,
                     check: "`systemctl is-active earlyoom` and /etc/default/earlyoom as sous writes it",
                     apply: "apt-get install -y earlyoom; write /etc/default/earlyoom; systemctl enable --now earlyoom"),
            PlanStep(id: "pull", title: "pull \(inv.image)", nodes: all,
                     check: "`docker image inspect --format {{.Id}} \(inv.image)` gives one ID on every node",
                     apply: "`docker pull \(inv.image)` on all nodes at once, then compare image IDs"),
            PlanStep(id: "env", title: "env file \(NodePaths.envFile) (0600)", nodes: all,
                     check: "the file exists with mode 0600 and the rendered content" + (inv.apiKeyEnv != nil ? " (the API key on \(heads.joined(separator: ", ")) only)" : ""),
                     apply: "SFTP upload to a temporary name with mode 0600, then rename over the old file"),
        ]
        steps.append(PlanStep(id: "start.workers", title: "start worker rank\(workers.count == 1 ? "" : "s")", nodes: workers,
                              check: "container \(NodePaths.container) is running with the rendered image and arguments (`docker inspect`)",
                              apply: "`docker rm -f \(NodePaths.container)` on every node, the head first; `docker run` as `sous render` prints"))
        steps.append(PlanStep(id: "start.head", title: d.isMultiGroup ? "start each group's head (rank 0, API on \(apiPorts))" : "start the head (rank 0, API on :\(inv.port))", nodes: heads,
                              check: "container \(NodePaths.container) is running with the rendered image and arguments (`docker inspect`)",
                              apply: "`docker rm -f \(NodePaths.container)`; `docker run` as `sous render` prints"))
        steps.append(PlanStep(id: "wait", title: "wait for the engine", nodes: all,
                              check: "the container runs on every node (an exited one stops `up` with its log) → GET /health 200 on \(heads.joined(separator: ", "))",
                              apply: "poll until --timeout, showing the head's latest log line"))
        steps.append(PlanStep(id: "verify", title: d.isMultiGroup ? "verify each group like an agent" : "verify like an agent", nodes: heads,
                              check: "GET /v1/models lists \(recipe.servedModelName)" + (inv.apiKeyEnv != nil ? " with the key, and 401 without it; " : "; ")
                                + (fingerprint ? "a real completion whose system_fingerprint contains -\(tp)-" : "vLLM \(inv.vllmVersion!) has no system_fingerprint: --tensor-parallel-size \(recipe.tensorParallelSize) on every node from `docker inspect` and the engine log")
                                + "; then the four checks: model list, forced tool call, JSON arguments, tool-result round trip",
                              apply: "nothing: read-only"))
        if d.isMultiGroup {
            let router = d.router
            steps.append(PlanStep(id: "router", title: "the router in front of the groups" + (router.map { " (\($0.baseURL))" } ?? ": none named in \(inv.file), so `up` stops here"),
                                  nodes: router.map { [$0.node.name] } ?? [],
                                  check: "container \(RouterCommand.container) runs the rendered vllm-router command; GET /health 200 (every group healthy); GET /list_workers holds every group's API; then the same checks through it",
                                  apply: "`docker run` as `sous render` prints; POST /add_worker for a group it lacks"))
        }
        steps.append(PlanStep(id: "journal", title: "record the result", nodes: [head],
                              check: "nothing: every verified run is recorded",
                              apply: "append one JSON line to \(JournalOps.path) on \(head) and to ~/.local/state/sous/journal.jsonl (`sous history`)"))
        return steps
    }

    public static func text(_ d: Deployment, steps: [PlanStep]) -> String {
        let groups = d.isMultiGroup ? " in \(d.groups.count) groups of \(d.groupSize)" : ""
        var out = "sous plan: recipe \(d.recipe.name) on cluster \(d.inventory.cluster) (\(d.inventory.nodes.count) nodes\(groups), tp \(d.recipe.tensorParallelSize), \(d.inventory.image))\n"
        if d.isMultiGroup {
            for g in d.groups { out += "  \(RenderReport.groupLine(d, g))\n" }
        }
        for (i, s) in steps.enumerated() {
            out += "\n\(String(format: "%2d", i + 1)). \(s.title)  [\(s.nodes.joined(separator: ", "))]\n"
            out += "    ok when: \(s.check)\n"
            out += "    else:    \(s.apply)\n"
            if let now = s.now { out += "    now:     \(now)\n" }
        }
        return out
    }
}
