import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// What a simulated node has in place of NVIDIA's container toolkit and a real image's userland.
/// Docker, containerd and runc are the real ones (Debian's docker.io); only what cannot exist here is stood in.
public enum SimRuntime {
    /// Where a node keeps the files its GPU hook injects: the simulation's engine and `nvidia-smi`.
    static let engineDir = "/var/lib/sous-sim/engine"
    /// The node's record of the processes that were given the GPU (read by the modelled `nvidia-smi`).
    static let gpuDir = "/run/sous-sim/gpu"

    /// The node's engine directory (seen at /opt/sous-sim in a GPU container): the modelled engine (this binary,
    /// told apart by its name), `nvidia-smi`, and the `vllm` entry that picks the engine the image stands for.
    /// `rank` places the node's engine on one CPU of this machine, as each Spark has its own GPU.
    static func writeEngineDir(_ nd: String, tools: String, rank: Int) throws {
        let dir = "\(nd)/var-lib/sous-sim/engine", fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        for sub in ["bin", "modelled"] { try fm.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true) }
        try fm.linkItem(atPath: tools, toPath: "\(dir)/sous-sim-tools")
        try fm.createSymbolicLink(atPath: "\(dir)/modelled/vllm", withDestinationPath: "../sous-sim-tools")
        try fm.createSymbolicLink(atPath: "\(dir)/bin/nvidia-smi", withDestinationPath: "../sous-sim-tools")
        try """
        #!/bin/sh
        # The engine the image stands for (its SOUS_SIM_ENGINE): the modelled vLLM, or the real one.
        if [ "$SOUS_SIM_ENGINE" = vllm ]; then
          e=/var/cache/sous/engines/vllm-$SOUS_SIM_VLLM_VERSION
          [ -x "$e/bin/vllm" ] || { echo "the real vLLM $SOUS_SIM_VLLM_VERSION is not installed on this machine (scripts/engine-env $SOUS_SIM_VLLM_VERSION)" >&2; exit 1; }
          [ -f /opt/sous-sim/engine.env ] && . /opt/sous-sim/engine.env
          exec "$e/bin/vllm" "$@"
        fi
        exec /opt/sous-sim/modelled/vllm "$@"

        """.write(toFile: "\(dir)/bin/vllm", atomically: true, encoding: .utf8)
        try Local.run("/bin/chmod", ["0755", "\(dir)/bin/vllm"])
        // What the real engine needs on a CPU instead of a GB10, none of it in sous's rendering (MACHINE.md, the real
        // vLLM on CPU): one thread-bind list per rank (the default `auto` asserts two local workers need two NUMA
        // nodes), and a KV cache in GiB of host memory instead of --gpu-memory-utilization of a GPU.
        let cpus = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        try """
        export VLLM_CPU_OMP_THREADS_BIND=\(rank % cpus)
        export VLLM_CPU_KVCACHE_SPACE=1

        """.write(toFile: "\(dir)/engine.env", atomically: true, encoding: .utf8)
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }

    /// The OCI runtime dockerd calls (`default-runtime` in the node's daemon.json): runc, after adding to each
    /// container's spec read-only binds of this machine's /usr and Swift runtime. The simulation's images are a
    /// few kilobytes (busybox and the `vllm`/`hf` entry points) instead of a real vLLM image's ~20 GB, so the
    /// programs they start use the host's userland this way. containerd's runc shim calls the runtime as
    /// `RUNTIME [global flags] create --bundle DIR ID` (containerd pkg/process/init.go, go-runc runc.go Create).
    public static func runtime(_ args: [String]) -> Never {
        if let create = args.firstIndex(of: "create"), let b = args[create...].firstIndex(where: { $0 == "--bundle" || $0 == "-b" }), b + 1 < args.count {
            do { try addUserland(bundle: args[b + 1]) } catch { fail("sous-sim-runc: \(error)") }
        }
        let argv = (["runc"] + args).map { strdup($0) } + [nil]
        execv("/usr/bin/runc", argv)
        fail("sous-sim-runc: exec /usr/bin/runc: \(String(cString: strerror(errno)))")
    }

    static func addUserland(bundle: String) throws {
        let path = bundle + "/config.json"
        guard var spec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] else { return }
        var mounts = spec["mounts"] as? [[String: Any]] ?? []
        for dir in ["/usr", "/opt/swift", "/var/cache/sous"] where FileManager.default.fileExists(atPath: dir) {
            mounts.append(["destination": dir, "type": "bind", "source": dir, "options": ["rbind", "ro", "nosuid"]])
        }
        spec["mounts"] = mounts
        // `--ulimit memlock=-1` (rendered for RDMA) needs CAP_SYS_RESOURCE, which this machine's root lacks
        // (as for negative oom_score_adj, MACHINE.md); a DGX Spark allows it. The limit is dropped here only.
        if var process = spec["process"] as? [String: Any], let limits = process["rlimits"] as? [[String: Any]] {
            process["rlimits"] = limits.filter { $0["type"] as? String != "RLIMIT_MEMLOCK" }
            spec["process"] = process
        }
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
    }

    /// The stand-in for `nvidia-container-runtime-hook`, which Docker 20.10 adds as an OCI prestart hook to a
    /// container started with `--gpus` (moby daemon/nvidia_linux.go: `hookName = "nvidia-container-runtime-hook"`,
    /// found on dockerd's PATH, called with the argument `prestart` and the OCI state on stdin). As the real hook
    /// injects the driver's files and `nvidia-smi`, this one binds the node's engine directory at /opt/sous-sim
    /// (the engine the image stands for, and `nvidia-smi`) and the node's fault switches, and records the process
    /// as a GPU user. It runs before pivot_root, so binds go into the container's mount namespace by its PID.
    public static func gpuHook(_ args: [String]) -> Never {
        guard args.first == "prestart" else { exit(0) }
        let input = FileHandle.standardInput.readDataToEndOfFile()
        guard let state = try? JSONSerialization.jsonObject(with: input) as? [String: Any],
              let pid = state["pid"] as? Int, let bundle = state["bundle"] as? String,
              let data = FileManager.default.contents(atPath: bundle + "/config.json"),
              let spec = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let rootPath = (spec["root"] as? [String: Any])?["path"] as? String else { fail("nvidia-container-runtime-hook: unreadable OCI state") }
        let root = rootPath.hasPrefix("/") ? rootPath : bundle + "/" + rootPath
        for target in ["/opt/sous-sim", SimPaths.root] {
            try? FileManager.default.createDirectory(atPath: root + target, withIntermediateDirectories: true)
        }
        for (source, target) in [(engineDir, "/opt/sous-sim"), (SimPaths.root, SimPaths.root)] {
            let r = try? Local.run("/usr/bin/nsenter", ["-t", String(pid), "-m", "/bin/mount", "--bind", source, root + target], check: false)
            guard r?.status == 0 else { fail("nvidia-container-runtime-hook: mount \(source): \(r?.output ?? "")") }
        }
        try? FileManager.default.createDirectory(atPath: gpuDir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: "\(gpuDir)/\(pid)", contents: nil)
        exit(0)
    }

    /// PIDs of the running processes that were given the GPU.
    static func gpuProcesses() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: gpuDir)) ?? []).compactMap { Int32($0) }.filter(Local.alive).sorted()
    }
}

/// The modelled `nvidia-smi`: one GB10 with 128 GB of unified memory (memory fields N/A, as on a real Spark),
/// listing the processes the GPU hook gave the GPU while they run.
public enum SimNvidiaSMI {
    public static func main(_ args: [String]) -> Never {
        let engines = SimRuntime.gpuProcesses()
        if args.contains("-L") {
            print("GPU 0: NVIDIA GB10 (UUID: GPU-5a1b0000-0000-4000-8000-000000000001)")
            exit(0)
        }
        if let q = args.first(where: { $0.hasPrefix("--query-gpu=") }) {
            let fields = q.dropFirst("--query-gpu=".count).split(separator: ",")
            let values = fields.map { f -> String in
                switch f { case "name": return "NVIDIA GB10"; case "index": return "0"; case "driver_version": return "580.95.05"
                default: return "[N/A]" }
            }
            print(values.joined(separator: ", "))
            exit(0)
        }
        if args.contains(where: { $0.hasPrefix("--query-compute-apps=") }) {
            for pid in engines { print("\(pid), VLLM::EngineCore, [N/A]") }
            exit(0)
        }
        print("""
        +-----------------------------------------------------------------------------------------+
        | NVIDIA-SMI 580.95.05              Driver Version: 580.95.05      CUDA Version: 13.0     |
        |   0  NVIDIA GB10                    On  |   0000000F:01:00.0 Off |                  N/A |
        | N/A   41C    P0             11W /  N/A  | Not Supported          |      0%      Default |
        +-----------------------------------------------------------------------------------------+
        | Processes:                                                                              |
        """)
        for pid in engines { print("|    0   N/A  N/A      \(pid)      C   VLLM::EngineCore                        N/A      |") }
        if engines.isEmpty { print("|  No running processes found                                                             |") }
        exit(0)
    }
}

/// The modelled `ibdev2netdev` (Mellanox OFED): each ConnectX-7 port's RoCE device and netdev twin, Up or Down.
public enum SimIbdev2netdev {
    public static func main(_ args: [String]) -> Never {
        let up = (try? String(contentsOfFile: "/sys/class/net/enp1s0f1np1/operstate", encoding: .utf8))?.hasPrefix("up") ?? false
        print("rocep1s0f0 port 1 ==> enp1s0f0np0 (Down)")
        print("rocep1s0f1 port 1 ==> enp1s0f1np1 (\(up ? "Up" : "Down"))")
        print("roceP2p1s0f0 port 1 ==> enP2p1s0f0np0 (Down)")
        print("roceP2p1s0f1 port 1 ==> enP2p1s0f1np1 (Down)")
        exit(0)
    }
}
