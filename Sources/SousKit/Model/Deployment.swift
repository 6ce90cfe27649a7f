/// One tensor-parallel group of a deployment: the nodes that serve one copy of the model, head (rank 0) first.
public struct ServeGroup: Sendable {
    public var name: String
    /// Its place among the deployment's groups, from 0.
    public var index: Int
    /// Rank order: the head first.
    public var nodes: [NodeSpec]
    /// The port the head serves the API on.
    public var port: Int

    public var head: NodeSpec { nodes[0] }
    public var ranked: [(rank: Int, node: NodeSpec)] { nodes.enumerated().map { ($0.offset, $0.element) } }
}

/// A recipe placed on an inventory: validated together, ready to render.
public struct Deployment: Sendable {
    public var recipe: Recipe
    public var inventory: Inventory
    /// The engine settings after the inventory's hardware profile overrides.
    public var engine: EngineSettings
    public var warnings: [ConfigIssue]
    /// How long `up` waits for the engine (its `--timeout`): the engine is told to wait as long and a minute more
    /// (`VLLM_ENGINE_READY_TIMEOUT_S`), so it never gives up on a slow load while sous still waits.
    public var engineReadyBudget: Duration = .seconds(1800)
    /// The tensor-parallel groups, in order: one of all nodes when the recipe's size spans them (the head first,
    /// then the workers in file order, as `Inventory.ranked`); else the inventory's `groups:`, or consecutive runs
    /// of that order, each as many nodes as one copy of the model needs.
    /// Derived from the inventory each time, so a node changed after validation renders as it now is.
    public var groups: [ServeGroup] {
        Deployment.formGroups(inventory, tensorParallelSize: recipe.tensorParallelSize)
            ?? [ServeGroup(name: "group-0", index: 0, nodes: inventory.ranked.map(\.node), port: inventory.port)]
    }

    /// More than one group: each serves its own copy of the model on its own head.
    public var isMultiGroup: Bool { groups.count > 1 }
    /// Nodes per group: the tensor-parallel size over the GPUs of one node.
    public var groupSize: Int { groups.first?.nodes.count ?? inventory.nodes.count }

    /// Loads both files and checks what only the pair can tell; throws every problem at once.
    public static func load(recipe recipePath: String, inventory inventoryPath: String, relativeTo directory: String? = nil) throws(ConfigErrors) -> Deployment {
        var issues: [ConfigIssue] = []
        var recipe: Recipe?, inventory: Inventory?
        do { let r = try RecipeReader.load(path: recipePath, relativeTo: directory); recipe = r.0; issues += r.1 } catch { issues += error.issues }
        do { let i = try InventoryReader.load(path: inventoryPath, relativeTo: directory); inventory = i.0; issues += i.1 } catch { issues += error.issues }
        guard let recipe, let inventory else { throw ConfigErrors(issues) }
        return try make(recipe: recipe, inventory: inventory, issues: issues)
    }

    /// The same recipe on the same nodes with another image (the vLLM version read from its tag), validated again:
    /// the reference as the inventory's `image` is checked (its issues named `--image`), then the pair.
    public static func make(recipe: Recipe, inventory: Inventory, image: String) throws(ConfigErrors) -> Deployment {
        let sink = IssueSink(file: "--image")
        InventoryReader.checkImage(image, at: nil, sink: sink)
        if sink.hasErrors { throw ConfigErrors(sink.issues) }
        var inv = inventory
        inv.image = image
        inv.vllmVersion = VLLMVersion.fromImage(image) ?? inventory.vllmVersion
        return try make(recipe: recipe, inventory: inv, issues: sink.issues)
    }

    public static func make(recipe: Recipe, inventory: Inventory, issues: [ConfigIssue] = []) throws(ConfigErrors) -> Deployment {
        var issues = issues
        let engine = recipe.engine(for: inventory.hardware)
        func err(_ key: String, _ problem: String, hint: String? = nil) {
            issues.append(ConfigIssue(.error, file: recipe.file, location: recipe.location(of: key), keyPath: key, problem: problem, hint: hint))
        }
        func warn(_ key: String, _ problem: String, hint: String? = nil) {
            issues.append(ConfigIssue(.warning, file: recipe.file, location: recipe.location(of: key), keyPath: key, problem: problem, hint: hint))
        }

        let gpus = inventory.nodes.count * inventory.gpusPerNode
        let perGroup = recipe.tensorParallelSize / max(1, inventory.gpusPerNode)
        let groups = formGroups(inventory, tensorParallelSize: recipe.tensorParallelSize)
        if let named = inventory.groups {
            for g in named where g.nodes.count * inventory.gpusPerNode != recipe.tensorParallelSize {
                issues.append(ConfigIssue(file: inventory.file, location: g.location, keyPath: "groups.\(g.name)",
                                          problem: "\(g.nodes.count) node\(g.nodes.count == 1 ? "" : "s") × \(inventory.gpusPerNode) GPU = \(g.nodes.count * inventory.gpusPerNode), but \(recipe.file) has tensor_parallel_size \(recipe.tensorParallelSize)",
                                          hint: "every group holds \(perGroup) node\(perGroup == 1 ? "" : "s") (one copy of the model)"))
            }
        } else if recipe.tensorParallelSize != gpus, groups == nil {
            err("tensor_parallel_size", "\(recipe.tensorParallelSize) does not match the inventory: \(inventory.nodes.count) node\(inventory.nodes.count == 1 ? "" : "s") × \(inventory.gpusPerNode) GPU = \(gpus) (\(inventory.file))",
                hint: "use an inventory with \(recipe.tensorParallelSize / max(1, inventory.gpusPerNode)) nodes, or a recipe with tensor_parallel_size \(gpus)")
        }
        if recipe.clientContext >= engine.maxModelLen {
            err("client.context", "\(recipe.clientContext) must stay below max_model_len (\(engine.maxModelLen) under the \(inventory.hardware ?? "default") profile)")
        }
        if let profile = inventory.profile, profile.unifiedMemory, engine.gpuMemoryUtilization > profile.maxSafeGpuMemoryUtilization {
            warn("gpu_memory_utilization", "\(engine.gpuMemoryUtilization) is above \(profile.maxSafeGpuMemoryUtilization) on \(profile.name): GPU and OS share \(profile.memoryGiB) GB of unified memory, and a host with too little left can wedge without any OOM kill",
                 hint: "set hardware.\(profile.name).gpu_memory_utilization to 0.8")
        }
        let catalog = ParserCatalog.builtin
        if let v = inventory.vllmVersion {
            if v < recipe.minVLLMVersion {
                err("min_vllm_version", "the recipe needs vLLM \(recipe.minVLLMVersion), but \(inventory.image) runs \(v)",
                    hint: "bump `image` in \(inventory.file)")
            }
            if inventory.launcher == .mp, (groups?.first?.nodes.count ?? inventory.nodes.count) > 1, v < VLLMVersion(0, 11, 1) {
                issues.append(ConfigIssue(file: inventory.file, location: inventory.locations["launcher"] ?? inventory.locations["image"], keyPath: "launcher",
                                          problem: "vLLM \(v) cannot run the mp launcher across nodes (it arrived in 0.11.1)",
                                          hint: "set `launcher: ray`, or use a newer image"))
            }
            if !catalog.hasSystemFingerprint(v) {
                warn("min_vllm_version", "vLLM \(v) does not report system_fingerprint (0.21.0 and later do): the tensor-parallel topology will be verified from docker inspect and the engine log instead")
            }
        }
        for (kind, name, key) in [(ParserCatalog.Kind.toolCall, Optional(recipe.toolCallParser), "parsers.tool_call"),
                                  (.reasoning, recipe.reasoningParser, "parsers.reasoning")] {
            guard let name else { continue }
            switch catalog.check(name, kind: kind, version: inventory.vllmVersion) {
            case .registered: break
            case .unconfirmed(let checked, let first):
                warn(key, "`\(name)` is not in vLLM \(checked) (the nearest release sous knows below \(inventory.vllmVersion!)) but is in \(first): cannot confirm it exists in \(inventory.vllmVersion!)")
            case .unknown(let suggestion):
                let on = inventory.vllmVersion.map { "vLLM \($0) (\(inventory.image))" } ?? "the newest vLLM sous knows"
                err(key, "`\(name)` is not a registered \(kind.rawValue) parser in \(on); vLLM would refuse to start (before loading any weight)",
                    hint: catalog.fate(of: name, kind: kind, version: inventory.vllmVersion) ?? suggestion.map { "did you mean `\($0)`?" }
                        ?? catalog.firstRelease(with: name, kind: kind).map { "it first appears in vLLM \($0)" })
            }
        }
        if issues.contains(where: { $0.severity == .error }) { throw ConfigErrors(issues) }
        return Deployment(recipe: recipe, inventory: inventory, engine: engine, warnings: issues)
    }

    /// The groups: the inventory's own (`groups:`), or consecutive runs of the rank order (`Inventory.ranked`),
    /// each as many nodes as the tensor-parallel size needs; nil when the nodes are not a whole number of groups.
    static func formGroups(_ inventory: Inventory, tensorParallelSize tp: Int) -> [ServeGroup]? {
        if let named = inventory.groups {
            let byName = Dictionary(uniqueKeysWithValues: inventory.nodes.map { ($0.name, $0) })
            return named.enumerated().map { i, g in
                ServeGroup(name: g.name, index: i, nodes: g.nodes.compactMap { byName[$0] }, port: g.port ?? inventory.port)
            }
        }
        let order = inventory.ranked.map(\.node)
        let gpus = max(1, inventory.gpusPerNode), perGroup = tp / gpus
        guard perGroup >= 1, tp % gpus == 0, !order.isEmpty, order.count % perGroup == 0 else { return nil }
        if order.count == perGroup { return [ServeGroup(name: "group-0", index: 0, nodes: order, port: inventory.port)] }
        return stride(from: 0, to: order.count, by: perGroup).enumerated().map { i, start in
            ServeGroup(name: "group-\(i)", index: i, nodes: Array(order[start..<start + perGroup]), port: inventory.port)
        }
    }
}
