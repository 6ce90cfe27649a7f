import ArgumentParser
import Foundation
import SousKit

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the deployment in another system's terms.",
        subcommands: [ExportLWSCommand.self]
    )
}

struct ExportLWSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lws",
        abstract: "A Kubernetes LeaderWorkerSet (one group per tensor-parallel group) and a Service for the leaders.",
        discussion: """
        leaderworkerset.x-k8s.io/v1 (kubernetes-sigs/lws): size = the nodes of one tensor-parallel group, replicas = \
        the groups. Leader and worker run the `vllm serve` arguments `sous render` prints, with $(LWS_GROUP_SIZE), \
        $(LWS_WORKER_INDEX) and $(LWS_LEADER_ADDRESS) for --nnodes, --node-rank and --master-addr; the env of the \
        env file; the API key from a Secret (never in the manifest); nvidia.com/gpu; /dev/shm as a memory emptyDir; \
        host networking, and an RDMA device-plugin resource with IPC_LOCK when the inventory names nccl_ib_hca. \
        The leader is ready when /health answers 200.

        Example:
          sous export lws --recipe nemotron-3-super-nvfp4 --inventory inventory/four-sparks.yaml --namespace llm
        """
    )

    @OptionGroup var deployment: DeploymentOptions

    @Option(help: "The namespace of both objects; without it kubectl's current one.")
    var namespace: String?

    @Option(help: "The LeaderWorkerSet's name (a DNS-1035 label); the Service is NAME-leader.")
    var name: String?

    @Option(help: ArgumentHelp("The Secret holding the API key under `api-key`.", valueName: "name"))
    var apiKeySecret: String?

    @Option(help: ArgumentHelp("The extended resource that brings the RDMA devices into each pod, or `none`.", valueName: "resource"))
    var rdmaResource: String = LWSExport.Options.defaultRDMAResource

    @Option(help: "Write to this file (replaced whole) instead of standard output.")
    var output: String?

    func run() throws {
        let d = try deployment.load(allowGroups: true)
        let m = try LWSExport.manifest(d, options: .init(name: name, namespace: namespace, apiKeySecret: apiKeySecret,
                                                         rdmaResource: rdmaResource == "none" ? nil : rdmaResource))
        guard let output else {
            print(m.yaml, terminator: "")
            return
        }
        // A temporary file beside it, renamed over it: a reader never sees half a manifest.
        let tmp = output + ".sous-tmp"
        let written = (try? m.yaml.write(toFile: tmp, atomically: false, encoding: .utf8)) != nil
        let why = String(cString: strerror(errno))
        guard written, rename(tmp, output) == 0 else {
            let renameWhy = written ? String(cString: strerror(errno)) : why
            unlink(tmp)
            throw UsageError("cannot write \(output): \(renameWhy); nothing was written", hint: "check that its directory exists and is writable")
        }
        FileHandle.standardError.write(Data("wrote \(output): LeaderWorkerSet \(m.name) (\(d.groups.count) × \(d.groupSize) pods), Service \(m.serviceName)\n".utf8))
    }
}
