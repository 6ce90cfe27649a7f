import ArgumentParser
import Foundation
import SousKit
import SousSim
#if canImport(Glibc)
import Glibc
#endif

struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "A simulated DGX Spark pair on this Linux machine, for tests and for rehearsing a change (root).",
        discussion: """
        Each node is a real OpenSSH sshd in its own network namespace (10.213.0.0/16, joined by the bridge \
        sousbr0; the whole range is first made unreachable so nothing leaks to a real network) and its own mount \
        namespace (/etc/systemd/system, /etc/default, /var/lib, /usr/local/bin and the HF cache are the node's own), \
        with a login user `sous` that has passwordless sudo, and its own real Docker daemon (Debian's docker.io: own \
        /run, data root and cgroup parent). A real registry (Docker Distribution) on the bridge is every node's mirror, \
        holding the images the simulation offers (vllm/vllm-openai:v0.24.0, v0.25.0, v0.28.0 and faulty builds such as \
        v0.28.0-sim-crash-on-start), so pulls, image IDs, digests, restart policies and `docker inspect` are Docker's own. \
        Modelled, because they cannot exist here: the GPU (`nvidia-smi`, and a stand-in for NVIDIA's container hook that \
        `--gpus all` calls), the ConnectX-7 link and unified memory. The engine in the images is a modelled vLLM that \
        parses the real flags, joins the ranks over TCP and serves the OpenAI API.

        A simulated Hugging Face hub (an HTTP server on 10.213.0.1:8420 speaking the Hub API `hf download` uses, \
        over small checkpoints in the real formats in DIR/hub) serves the real `hf` CLI on each node (huggingface_hub \
        from PyPI, installed by scripts/hf-env; --hf-version picks the generation); the nodes log in to each other \
        with the login user's key, so `sous model --fetch` runs real rsync.

          sous sim up                   start two nodes, write inventory/sim.yaml
          sous sim up --nodes 4 --router  two pairs behind vLLM's router (scripts/router-env first)
          sous sim fault spark-2 wedge  switch a fault on (--off to clear it)
          sous sim fault spark-1 reboot power-cycle a node (containers come back as their restart policy says)
          sous sim image push v0.30.0   offer another release in the registry (for a roll)
          sous sim hub-add org/big --shards 4 --shard-bytes 536870912
                                        a checkpoint of any size in the hub
          sous sim down                 remove everything sim up made
        """,
        subcommands: [SimUp.self, SimDown.self, SimFaultCommand.self, SimHubAdd.self, SimImage.self, SimHubServe.self]
    )
}

struct SimOptions: ParsableArguments {
    @Option(help: "Directory for the simulation's keys, node files and state.")
    var dir = ".sim"

    var layout: SimLayout {
        SimLayout(dir: dir.hasPrefix("/") ? dir : FileManager.default.currentDirectoryPath + "/" + dir)
    }

    func requireRoot() throws {
        guard getuid() == 0 else { throw UsageError("sous sim needs root (it creates network namespaces and starts sshd)", hint: "sudo sous sim …") }
    }
}

struct SimUp: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Start the simulated nodes and write an inventory for them.")

    @OptionGroup var options: SimOptions

    @Option(help: "Number of nodes.")
    var nodes = 2

    @Option(name: [.customShort("i"), .long], help: "Where to write the inventory (default inventory/sim.yaml, or DIR/sim.yaml with --dir).")
    var inventory: String?

    @Option(help: "Seconds the simulated engine takes to load.")
    var loadSeconds: Double = 2

    @Option(help: "Size of each safetensors shard in the simulated hub's checkpoints, in bytes.")
    var shardBytes = 1 << 20

    @Option(help: "Bytes per second of a simulated download from the hub.")
    var downloadRate = 400_000_000

    @Option(help: "The engine the images run: modelled (fast, the default) or vllm (the real vLLM CPU engine of each release scripts/engine-env installed, serving the tiny agent model of scripts/make-tiny-agent; recipe tiny-agent).")
    var engine: SimRegistry.Engine = .modelled

    @Flag(help: "Put vLLM's real router (vllm-router from PyPI, scripts/router-env) in the inventory, on the first node, port 8080: with --nodes 4 and a tp-2 recipe, two groups behind one endpoint.")
    var router = false

    @Option(help: "The huggingface_hub release whose real `hf` the nodes run (installed by scripts/hf-env): \(SimHubServer.generations.joined(separator: ", ")). Default: SOUS_SIM_HF_VERSION, else \(SimHubServer.defaultGeneration).")
    var hfVersion: String?

    func run() throws {
        try options.requireRoot()
        if let hfVersion {
            _ = try SimHubServer.cli(hfVersion)
            setenv("SOUS_SIM_HF_VERSION", hfVersion, 1)
        }
        let l = options.layout
        let path = inventory ?? (options.dir == ".sim" ? "inventory/sim.yaml" : "\(l.dir)/sim.yaml")
        for line in try SimCluster.up(l, nodes: nodes, inventory: path, loadSeconds: loadSeconds, 
                                      shardBytes: shardBytes, downloadRate: downloadRate, engine: engine, router: router) { print(line) }
    }

}

struct SimDown: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "Remove every process, namespace, link and route `sim up` made.")

    @OptionGroup var options: SimOptions

    func run() throws {
        try options.requireRoot()
        print(SimCluster.teardown(options.layout))
    }

}

struct SimHubAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub-add",
        abstract: "Add a checkpoint to the simulated hub (a small Llama-like config, safetensors shards of the size asked for).",
        discussion: "The hub is DIR/hub; `sous sim up` fills it with the shipped recipes' models. A recipe naming MODEL can then fetch it."
    )

    @OptionGroup var options: SimOptions

    @Argument(help: "Model id, ORG/NAME.")
    var model: String

    @Option(help: "Number of shards.")
    var shards = 3

    @Option(help: "Bytes per shard.")
    var shardBytes = 1 << 20

    @Flag(help: "Make it gated (a download needs the token in DIR/hub/.tokens).")
    var gated = false

    func run() throws {
        guard model.range(of: "^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$", options: .regularExpression) != nil else {
            throw UsageError("`\(model)` is not a model id like org/name")
        }
        guard (1...64).contains(shards), shardBytes > 0 else { throw UsageError("--shards must be 1…64 and --shard-bytes positive") }
        let l = options.layout
        guard FileManager.default.fileExists(atPath: l.hub) else { throw UsageError("no simulated hub in \(l.dir)", hint: "sous sim up") }
        let repo = SimHub.Repo(model: model, config: SimHub.tinyConfig, totalSize: shards * shardBytes, gated: gated)
        try SimHub.write(repo, to: l.hub, shards: shards, shardBytes: shardBytes)
        try Local.sh("chmod -R a+rX '\(l.hub)/\(model)'")
        print("hub: \(model), \(shards) shards of \(shardBytes) bytes\(gated ? ", gated" : "")")
    }
}

/// The simulated hub's server process (started by `sim up`, stopped by `sim down`).
struct SimHubServe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hub-serve", abstract: "Serve the simulated hub over HTTP (started by `sim up`).",
                                                    shouldDisplay: false)

    @Option(help: "The hub directory.")
    var hub: String

    @Option(help: "IPv4 address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port of the Hub API.")
    var port = 0

    @Option(help: "IPv4 address of the CDN the large files redirect to (default: the next address after --host).")
    var cdnHost: String?

    @Option(help: "Port of the CDN.")
    var cdnPort = 0

    @Option(help: "Bytes per second over all downloads (0: unthrottled).")
    var rate = 0

    func run() throws {
        let server = try SimHubServer(hub: hub, host: host, port: port, cdnHost: cdnHost, cdnPort: cdnPort, rate: rate)
        print("hub: \(server.endpoint), CDN \(server.cdnHost):\(server.cdnPort)")
        fflush(nil)
        server.run()
    }
}

struct SimFaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fault", abstract: "Switch a fault on (or --off) on one simulated node.",
        discussion: "Kinds: " + SimFault.allCases.map(\.rawValue).joined(separator: ", ")
    )

    @OptionGroup var options: SimOptions

    @Argument(help: "Node name (spark-1, spark-2, …).")
    var node: String

    @Argument(help: "Fault kind.")
    var kind: String

    @Flag(help: "Switch the fault off.")
    var off = false

    func run() throws {
        try options.requireRoot()
        print(try SimCluster.fault(options.layout, node: node, kind: kind, off: off))
    }
}

struct SimImage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "image", abstract: "Images in the simulation's registry.",
                                                    subcommands: [SimImagePush.self])
}

struct SimImagePush: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push", abstract: "Build vllm/vllm-openai:TAG and push it to the simulation's registry.",
        discussion: """
        TAG names a vLLM release (v0.30.0), optionally a faulty build of it (v0.30.0-sim-crash-on-start). With \
        --engine vllm the image runs the real vLLM of that release (installed by scripts/engine-env).
        """
    )

    @OptionGroup var options: SimOptions

    @Argument(help: "The tag, e.g. v0.30.0.")
    var tag: String

    @Option(help: "The engine the image runs: modelled or vllm.")
    var engine: SimRegistry.Engine = .modelled

    func run() throws {
        try options.requireRoot()
        guard tag.range(of: #"\Av[0-9]+\.[0-9]+\.[0-9]+(-sim-[a-z0-9-]+)?\z"#, options: .regularExpression) != nil else {
            throw UsageError("`\(tag)` is not a tag like v0.30.0 or v0.30.0-sim-wedge")
        }
        let l = options.layout
        guard SimRegistry.pid(l) != nil else { throw UsageError("the simulation's registry is not running", hint: "sous sim up") }
        try SimRegistry.push(l, tag: tag, engine: engine)
        print("registry: \(SimRegistry.repository):\(tag) (\(engine.rawValue) engine)")
    }
}

extension SimRegistry.Engine: ExpressibleByArgument {}
