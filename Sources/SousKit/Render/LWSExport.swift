import Foundation

/// `sous export lws`: the deployment as a LeaderWorkerSet (kubernetes-sigs/lws, leaderworkerset.x-k8s.io/v1) and a
/// Service in front of the group leaders. One LWS group is one tensor-parallel group: `size` is its node count
/// (one pod per node, each with the node's GPUs), `replicas` the number of groups. Both templates run the
/// `vllm serve` arguments `Renderer` renders, with LWS's variables in place of the per-node flags: `--nnodes
/// $(LWS_GROUP_SIZE) --node-rank $(LWS_WORKER_INDEX) --master-addr $(LWS_LEADER_ADDRESS)`, as the LWS examples
/// do (docs/examples/sglang/lws.yaml), and the env `sous render` writes to the env file, the API key from a
/// Secret. Pure: no I/O.
///
/// Assumed about the Kubernetes side, as `sous render`'s `docker run` assumes it of the node:
/// - `hostNetwork: true` (docker `--network host`): NCCL_SOCKET_IFNAME and friends name a host interface
///   (the ConnectX-7 port), and the API port is the node's; `dnsPolicy: ClusterFirstWithHostNet` so the
///   leader's cluster DNS name (LWS_LEADER_ADDRESS) still resolves.
/// - VLLM_HOST_IP from the pod's IP (with host networking, the node's address as the kubelet reports it): a
///   template cannot name each machine's interconnect address.
/// - RDMA (when the inventory names `nccl_ib_hca`): one unit of an RDMA device-plugin resource (NVIDIA Network
///   Operator's shared device plugin, `rdma/rdma_shared_device_a` unless told otherwise) puts /dev/infiniband in
///   the pod, plus IPC_LOCK (docker `--device /dev/infiniband --cap-add IPC_LOCK`); memlock is the container
///   runtime's limit (unlimited under containerd's default unit), Kubernetes has no ulimit field.
/// - The checkpoint is already in each node's HF cache (`sous model --fetch`), mounted by hostPath, as
///   `docker run -v`; the engine runs with HF_HUB_OFFLINE=1.
/// - /dev/shm: a memory-backed emptyDir of the inventory's `shm_size` (docker `--shm-size`).
public enum LWSExport {
    public struct Options: Sendable {
        /// The LeaderWorkerSet's name (a DNS-1035 label); nil: the cluster's name.
        public var name: String?
        public var namespace: String?
        /// The Secret holding the API key under `api-key`; nil: `<name>-api-key`.
        public var apiKeySecret: String?
        /// The extended resource that brings RDMA devices into the pod; nil: none requested.
        public var rdmaResource: String?

        public static let defaultRDMAResource = "rdma/rdma_shared_device_a"

        public init(name: String? = nil, namespace: String? = nil, apiKeySecret: String? = nil, rdmaResource: String? = defaultRDMAResource) {
            self.name = name
            self.namespace = namespace
            self.apiKeySecret = apiKeySecret
            self.rdmaResource = rdmaResource
        }
    }

    /// The key inside the Secret.
    public static let secretKey = "api-key"
    /// pkg/utils/pod/pod_utils.go (AddLWSVariables): what LWS adds to every container of a group.
    public static let leaderAddress = "$(LWS_LEADER_ADDRESS)", groupSize = "$(LWS_GROUP_SIZE)", workerIndex = "$(LWS_WORKER_INDEX)"
    /// api/leaderworkerset/v1/leaderworkerset_types.go: the label LWS puts on every pod, with the set's name.
    public static let setNameLabel = "leaderworkerset.sigs.k8s.io/name"

    /// A DNS-1035 label (the set's name becomes its headless Service's: pkg/webhooks/leaderworkerset_webhook.go).
    static let dns1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"
    /// A DNS-1123 label (a namespace).
    static let dns1123 = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    /// An extended resource name: `domain/name`.
    static let resourceName = "[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"

    public struct Manifest: Sendable {
        /// Multi-document YAML: the LeaderWorkerSet, then the Service.
        public var yaml: String
        public var name: String
        public var serviceName: String
        public var secretName: String
    }

    /// The manifests, or a usage error naming the option to change.
    public static func manifest(_ d: Deployment, options: Options = Options()) throws -> Manifest {
        let inv = d.inventory
        guard inv.launcher == .mp else {
            throw UsageError("`sous export lws` renders the mp launcher (vLLM's own --nnodes/--node-rank); \(inv.file) uses ray",
                             hint: "set `launcher: mp` (vLLM 0.11.1 or later)")
        }
        let name = options.name ?? inv.cluster
        // The leader's pods are `<name>-<group>` and its Service `<name>-leader`: leave room for both.
        guard name.matchesWhole(dns1035), name.count <= 40 else {
            throw UsageError("`\(name.escapingControls)` cannot name a LeaderWorkerSet: lowercase letters, digits and '-', starting with a letter, at most 40 characters",
                             hint: options.name == nil ? "pass --name (the cluster's name `\(inv.cluster)` is not one)" : "choose another --name")
        }
        if let ns = options.namespace, !(ns.matchesWhole(dns1123) && ns.count <= 63) {
            throw UsageError("`\(ns.escapingControls)` is not a namespace name (lowercase letters, digits and '-', at most 63 characters)")
        }
        let secret = options.apiKeySecret ?? "\(name)-api-key"
        if inv.apiKeyEnv != nil, !(secret.matchesWhole("[a-z0-9]([-a-z0-9.]*[a-z0-9])?") && secret.count <= 253) {
            throw UsageError("`\(secret.escapingControls)` is not a Secret name (a DNS subdomain)")
        }
        let rdma = inv.ncclIbHca == nil ? nil : options.rdmaResource
        if let rdma, !rdma.matchesWhole(resourceName) {
            throw UsageError("`\(rdma.escapingControls)` is not an extended resource name like rdma/rdma_shared_device_a",
                             hint: "--rdma-resource none requests none")
        }
        let renderer = Renderer(d)
        let size = d.groupSize
        let leader = try pod(d, renderer: renderer, leader: true, size: size, secret: secret, rdma: rdma)
        let worker = try pod(d, renderer: renderer, leader: false, size: size, secret: secret, rdma: rdma)
        let labels: YAMLTree = .map([("sous.cluster", .str(inv.cluster)), ("sous.recipe", .str(d.recipe.name))])

        func metadata(_ n: String) -> YAMLTree {
            .map([("name", .str(n))] + (options.namespace.map { [("namespace", YAMLTree.str($0))] } ?? []) + [("labels", labels)])
        }
        let lws: YAMLTree = .map([
            ("apiVersion", .str("leaderworkerset.x-k8s.io/v1")),
            ("kind", .str("LeaderWorkerSet")),
            ("metadata", metadata(name)),
            ("spec", .map([
                ("replicas", .int(d.groups.count)),
                ("leaderWorkerTemplate", .map([
                    ("size", .int(size)),
                    // One rank lost stops the whole tensor-parallel group: restart it together.
                    ("restartPolicy", .str("RecreateGroupOnPodRestart")),
                    ("leaderTemplate", .map([("metadata", .map([("labels", .map([("role", .str("leader"))]))])), ("spec", leader)])),
                    ("workerTemplate", .map([("metadata", .map([("labels", .map([("role", .str("worker"))]))])), ("spec", worker)])),
                ])),
            ])),
        ])
        let serviceName = "\(name)-leader"
        let service: YAMLTree = .map([
            ("apiVersion", .str("v1")),
            ("kind", .str("Service")),
            ("metadata", metadata(serviceName)),
            ("spec", .map([
                ("type", .str("ClusterIP")),
                ("selector", .map([(setNameLabel, .str(name)), ("role", .str("leader"))])),
                ("ports", .list([.map([("name", .str("http")), ("port", .int(inv.port)), ("targetPort", .int(inv.port)), ("protocol", .str("TCP"))])])),
            ])),
        ])

        var header = [
            "sous export lws: recipe \(d.recipe.name) on cluster \(inv.cluster) — \(inv.image), tp \(d.recipe.tensorParallelSize):",
            "\(d.groups.count) group\(d.groups.count == 1 ? "" : "s") (replicas) of \(size) pod\(size == 1 ? "" : "s") (size), one per node, \(inv.gpusPerNode) GPU each.",
            "Assumes host networking (NCCL uses \(inv.interface) on the node), the checkpoint in each node's HF cache",
            "(\(inv.hfCache(on: inv.head))), the NVIDIA device plugin (nvidia.com/gpu)"
                + (rdma.map { " and an RDMA device plugin (\($0))." } ?? "."),
        ]
        if let keyEnv = inv.apiKeyEnv {
            header += [
                "The API key comes from Secret \(secret) (key \(secretKey)); create it without the key on a command line:",
                "  printf %s \"$\(keyEnv)\" | kubectl create secret generic \(secret)\(options.namespace.map { " -n \($0)" } ?? "") --from-file=\(secretKey)=/dev/stdin",
            ]
        }
        if Set(d.groups.map(\.port)).count > 1 {
            header.append("Every leader serves on port \(inv.port): a LeaderWorkerSet's groups share one template, so the groups' own ports do not apply.")
        }
        let comments = header.map { "# " + $0.escapingControls }.joined(separator: "\n") + "\n"
        return Manifest(yaml: comments + "---\n" + lws.emit() + "---\n" + service.emit(), name: name, serviceName: serviceName, secretName: secret)
    }

    /// `$` doubled: Kubernetes expands `$(NAME)` in command, args and env values, and reads `$$` as one `$`
    /// (k8s.io/kubernetes third_party/forked/golang/expansion/expand.go), so a rendered value stays as written.
    static func literal(_ s: String) -> String { s.replacingOccurrences(of: "$", with: "$$") }

    static func pod(_ d: Deployment, renderer: Renderer, leader: Bool, size: Int, secret: String, rdma: String?) throws -> YAMLTree {
        let inv = d.inventory
        // The flags every rank shares, as `sous render` writes them; then LWS's variables for the per-node ones.
        var args = ["serve", d.recipe.model] + Renderer.argv(renderer.sharedFlags()).map(literal)
        if size > 1 {
            args += ["--nnodes", groupSize, "--node-rank", workerIndex, "--master-addr", leaderAddress, "--master-port", "\(inv.masterPort)"]
            if !leader { args.append("--headless") }
        }
        if leader { args += ["--host", "0.0.0.0", "--port", "\(inv.port)"] }

        var env: [YAMLTree] = []
        let head = d.groups[0].head
        for (name, value) in renderer.env(for: head, rank: leader ? 0 : 1) {
            switch value {
            case .plain where name == "VLLM_HOST_IP":
                env.append(.map([("name", .str(name)), ("valueFrom", .map([("fieldRef", .map([("fieldPath", .str("status.podIP"))]))]))]))
            case .plain(let v):
                try EnvFile.checkName(name)
                env.append(.map([("name", .str(name)), ("value", .str(literal(v)))]))
            case .secret:
                env.append(.map([("name", .str(name)), ("valueFrom", .map([("secretKeyRef", .map([("name", .str(secret)), ("key", .str(secretKey))]))]))]))
            }
        }
        var limits: [(String, YAMLTree)] = [("nvidia.com/gpu", .str("\(inv.gpusPerNode)"))]
        if let rdma { limits.append((rdma, .str("1"))) }

        var container: [(String, YAMLTree)] = [
            ("name", .str(leader ? "vllm-leader" : "vllm-worker")),
            ("image", .str(inv.image)),
            ("command", .list([.str("vllm")])),
            ("args", .list(args.map { .str($0) })),
            ("env", .list(env)),
            ("resources", .map([("limits", .map(limits))])),
        ]
        if leader {
            container.append(("ports", .list([.map([("name", .str("http")), ("containerPort", .int(inv.port)), ("protocol", .str("TCP"))])])))
            // vLLM's /health answers without the key; loading a large checkpoint takes minutes, which only delays readiness.
            container.append(("readinessProbe", .map([
                ("httpGet", .map([("path", .str("/health")), ("port", .int(inv.port))])),
                ("initialDelaySeconds", .int(15)), ("periodSeconds", .int(10)), ("timeoutSeconds", .int(5)), ("failureThreshold", .int(3)),
            ])))
        }
        if inv.ncclIbHca != nil {
            container.append(("securityContext", .map([("capabilities", .map([("add", .list([.str("IPC_LOCK")]))]))])))
        }
        container.append(("volumeMounts", .list([
            .map([("name", .str("dshm")), ("mountPath", .str("/dev/shm"))]),
            .map([("name", .str("hf-cache")), ("mountPath", .str(NodePaths.hfCacheInContainer))]),
        ])))
        return .map([
            ("hostNetwork", .bool(true)),
            ("dnsPolicy", .str("ClusterFirstWithHostNet")),
            ("containers", .list([.map(container)])),
            ("volumes", .list([
                .map([("name", .str("dshm")), ("emptyDir", .map([("medium", .str("Memory")), ("sizeLimit", .str(quantity(inv.shmSize)))]))]),
                .map([("name", .str("hf-cache")), ("hostPath", .map([("path", .str(inv.hfCache(on: head))), ("type", .str("Directory"))]))]),
            ])),
        ])
    }

    /// Docker's size (`10g`, `512m`, bytes when bare) as a Kubernetes quantity (`10Gi`): Docker's units are binary.
    static func quantity(_ docker: String) -> String {
        guard let last = docker.last, let unit = ["b": "", "k": "Ki", "m": "Mi", "g": "Gi"][String(last)] else { return docker }
        return String(docker.dropLast()) + unit
    }
}

/// A YAML document as sous writes it for Kubernetes: block mappings and lists, every string double-quoted with
/// JSON's escapes (valid YAML 1.1 and 1.2 alike, so `"on"`, `"0755"` or `"1e3"` never turn into a bool or a number
/// in any parser), integers and booleans plain, keys in the order given.
public indirect enum YAMLTree: Sendable {
    case map([(String, YAMLTree)])
    case list([YAMLTree])
    case str(String)
    case int(Int)
    case bool(Bool)

    public func emit() -> String {
        var out = ""
        write(into: &out, indent: 0)
        return out
    }

    static func quoted(_ s: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(s), as: UTF8.self)
    }

    static func key(_ k: String) -> String {
        k.matchesWhole("[A-Za-z][A-Za-z0-9._/-]*") ? k : quoted(k)
    }

    var scalar: String? {
        switch self {
        case .str(let s): return Self.quoted(s)
        case .int(let i): return "\(i)"
        case .bool(let b): return b ? "true" : "false"
        case .map(let m) where m.isEmpty: return "{}"
        case .list(let l) where l.isEmpty: return "[]"
        default: return nil
        }
    }

    func write(into out: inout String, indent: Int) {
        let pad = String(repeating: " ", count: indent)
        switch self {
        case .map(let entries):
            for (k, v) in entries {
                if let s = v.scalar {
                    out += "\(pad)\(Self.key(k)): \(s)\n"
                } else if case .list = v {
                    // Kubernetes style: a list's dashes at its key's indentation.
                    out += "\(pad)\(Self.key(k)):\n"
                    v.write(into: &out, indent: indent)
                } else {
                    out += "\(pad)\(Self.key(k)):\n"
                    v.write(into: &out, indent: indent + 2)
                }
            }
        case .list(let items):
            for item in items {
                if let s = item.scalar {
                    out += "\(pad)- \(s)\n"
                } else {
                    // The item's first line after the dash, the rest under it.
                    var inner = ""
                    item.write(into: &inner, indent: indent + 2)
                    out += pad + "- " + inner.dropFirst(indent + 2)
                }
            }
        default:
            out += pad + (scalar ?? "") + "\n"
        }
    }
}
