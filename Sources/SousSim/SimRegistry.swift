import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// The simulation's image registry: Docker Distribution (Debian's docker-registry) on the bridge, the nodes'
/// registry mirror for Docker Hub names, and the images it holds, built here with a real Docker daemon.
public enum SimRegistry {
    public static let address = "10.213.0.1:5000"
    /// The registry's storage, kept between simulations (the images are the same bytes every time); a new
    /// image definition gets a new directory (`generation`), so a stale one is never served.
    static let cacheRoot = "/var/cache/sous/sim-registry"
    /// Bump when the image contents change.
    static let generation = "4"
    /// One storage per engine: the same tag stands for the modelled engine in one and the real one in the other.
    static func storage(_ engine: Engine) -> String { "\(cacheRoot)/g\(generation)" + (engine == .modelled ? "" : "-\(engine.rawValue)") }
    public static let repository = "vllm/vllm-openai"

    /// The tags `sim up` offers: the releases the simulation serves, and bad builds of one of them (a roll to
    /// `v0.28.0-sim-crash-on-start` must roll back). The image's engine reads its version and faults from its env.
    public static let releases = ["0.15.0", "0.24.0", "0.25.0", "0.28.0"]
    public static var imageFaults: [SimFault] { [.slowLoad, .crashOnStart, .crashLater, .workerNeverJoins, .wrongParser, .malformedArguments, .engineDead, .wedge] }
    public static var tags: [String] { releases.map { "v\($0)" } + imageFaults.map { "v0.28.0-sim-\($0.rawValue)" } }

    public enum Engine: String, Sendable, CaseIterable {
        /// The modelled vLLM (SimVLLM), fast.
        case modelled
        /// The real vLLM engine from /var/cache/sous/engines/vllm-X.Y.Z (scripts/engine-env).
        case vllm
    }

    /// Where scripts/engine-env installs the real engines (SOUS_ENGINE_CACHE moves it there and here).
    static var engineRoot: String { ProcessInfo.processInfo.environment["SOUS_ENGINE_CACHE"] ?? "/var/cache/sous/engines" }

    /// The real vLLM releases installed on this machine (a finished install has its marker), oldest first.
    public static func installedEngines() -> [VLLMVersion] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: engineRoot)) ?? []
        return names.filter { $0.hasPrefix("vllm-") && FileManager.default.fileExists(atPath: "\(engineRoot)/\($0)/.sous-ok") }
            .compactMap { VLLMVersion(String($0.dropFirst(5))) }.sorted()
    }

    /// The tags the registry offers for an engine: every modelled release and bad build, or each installed real release.
    public static func tags(_ engine: Engine) -> [String] {
        engine == .modelled ? tags : installedEngines().map { "v\($0)" }
    }

    static func config(_ l: SimLayout, engine: Engine) -> String {
        """
        # Written by `sous sim up`: the simulation's registry (Docker Distribution), on the bridge only.
        version: 0.1
        log:
          level: info
          accesslog:
            disabled: false
        storage:
          filesystem:
            rootdirectory: \(storage(engine))
          delete:
            enabled: true
        http:
          addr: \(address)

        """
    }

    /// Starts the registry; returns its PID once it answers.
    static func start(_ l: SimLayout, engine: Engine) throws -> Int32 {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/docker-registry") else {
            throw UsageError("/usr/bin/docker-registry is missing", hint: "bash scripts/install-deps")
        }
        try FileManager.default.createDirectory(atPath: storage(engine), withIntermediateDirectories: true)
        try config(l, engine: engine).write(toFile: "\(l.dir)/registry.yml", atomically: true, encoding: .utf8)
        let pid = try Local.spawn("/usr/bin/docker-registry", ["serve", "\(l.dir)/registry.yml"], output: "\(l.dir)/registry.log", append: true, detach: true)
        try waitForPort(address, what: "the simulation's registry", log: "\(l.dir)/registry.log")
        try "\(pid)\n".write(toFile: "\(l.dir)/registry.pid", atomically: true, encoding: .utf8)
        return pid
    }

    public static func pid(_ l: SimLayout) -> Int32? {
        (try? String(contentsOfFile: "\(l.dir)/registry.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }.flatMap { Local.alive($0) ? $0 : nil }
    }

    static func waitForPort(_ hostPort: String, what: String, log: String) throws {
        let parts = hostPort.split(separator: ":")
        for _ in 0..<250 {
            if (try? Local.run("/bin/bash", ["-c", "exec 3<>/dev/tcp/\(parts[0])/\(parts[1])"])) != nil { return }
            usleep(20_000)
        }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw UsageError("\(what) did not start listening on \(hostPort): \(text.suffix(2000))", hint: "sous sim down, then sous sim up again")
    }

    /// vLLM's router, as the simulation runs it: a venv of `vllm-router` from PyPI (scripts/router-env), in an image
    /// of the simulation's busybox layer whose entry point is that venv's `vllm-router` (the runtime binds
    /// /var/cache/sous and the host's /usr into every container). vLLM publishes no router image.
    public static let routerVersion = "0.1.17"
    public static let routerRepository = "sous-sim/vllm-router"
    public static var routerImage: String { "\(routerRepository):v\(routerVersion)" }
    static var routerEntry: String {
        "\(ProcessInfo.processInfo.environment["SOUS_ROUTER_CACHE"] ?? "/var/cache/sous/router")/vllm-router-\(routerVersion)"
    }
    public static var routerInstalled: Bool { FileManager.default.fileExists(atPath: routerEntry + "/.sous-ok") }

    /// Pushes the router's image unless the registry holds it.
    static func ensureRouterImage(_ l: SimLayout) throws {
        guard !tagsPresent(routerRepository).contains("v\(routerVersion)") else { return }
        try withBuilder(l) { docker in
            let ref = "\(address)/\(routerImage)"
            try Local.run(docker[0], Array(docker.dropFirst()) + ["import", "--change", #"ENTRYPOINT ["\#(routerEntry)/bin/vllm-router"]"#,
                                                                   "--change", "LABEL org.opencontainers.image.version=\(routerVersion)", try rootfs(l), ref])
            try Local.run(docker[0], Array(docker.dropFirst()) + ["push", ref])
        }
    }

    /// Tags the registry already holds (its own catalogue API).
    static func tagsPresent(_ repository: String = repository) -> Set<String> {
        let r = try? Local.run("/usr/bin/curl", ["-fsS", "--max-time", "5", "http://\(address)/v2/\(repository)/tags/list"], check: false)
        guard let r, r.status == 0, let obj = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any] else { return [] }
        return Set(obj["tags"] as? [String] ?? [])
    }

    /// Builds and pushes every tag the registry lacks. Returns how many were pushed.
    @discardableResult
    static func ensureImages(_ l: SimLayout, tags wanted: [String], engine: Engine = .modelled) throws -> Int {
        let present = tagsPresent()
        let missing = wanted.filter { !present.contains($0) }
        guard !missing.isEmpty else { return 0 }
        try withBuilder(l) { docker in
            let base = try rootfs(l)
            for tag in missing { try push(docker, base: base, tag: tag, engine: engine) }
        }
        return missing.count
    }

    /// Builds and pushes one tag, whether or not the registry has it.
    public static func push(_ l: SimLayout, tag: String, engine: Engine) throws {
        try withBuilder(l) { docker in try push(docker, base: try rootfs(l), tag: tag, engine: engine) }
    }

    /// The image for `tag`: one shared layer (busybox and the entry points), the release and faults in its env.
    static func push(_ docker: [String], base: String, tag: String, engine: Engine) throws {
        guard let version = VLLMVersion.fromImage("\(repository):\(tag)") else {
            throw UsageError("`\(tag)` names no vLLM release", hint: "a tag like v0.30.0, or v0.28.0-sim-wedge for a faulty build")
        }
        var faults = ""
        if let r = tag.range(of: "-sim-") {
            let name = String(tag[r.upperBound...])
            guard SimFault(rawValue: name) != nil else { throw UsageError("unknown fault `\(name)` in tag `\(tag)`", hint: "faults: \(SimFault.allCases.map(\.rawValue).joined(separator: ", "))") }
            faults = name
        }
        let ref = "\(address)/\(repository):\(tag)"
        let changes = [
            #"ENTRYPOINT ["vllm"]"#,
            "ENV PATH=/opt/sous-sim/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV SOUS_SIM_VLLM_VERSION=\(version)", "ENV SOUS_SIM_ENGINE=\(engine.rawValue)", "ENV SOUS_SIM_IMAGE_FAULTS=\(faults)",
            "LABEL org.opencontainers.image.version=\(version) org.opencontainers.image.title=vllm-openai-sous-sim",
        ]
        try Local.run(docker[0], Array(docker.dropFirst()) + ["import"] + changes.flatMap { ["--change", $0] } + [base, ref])
        try Local.run(docker[0], Array(docker.dropFirst()) + ["push", ref])
    }

    /// The images' one filesystem layer: busybox, and `vllm` and `hf` entry points that run what the node's GPU
    /// hook injected (without `--gpus` there is no engine, as there is no CUDA device for real vLLM).
    static func rootfs(_ l: SimLayout) throws -> String {
        let stage = "\(l.dir)/image-rootfs"
        try? FileManager.default.removeItem(atPath: stage)
        let fm = FileManager.default
        for d in ["bin", "etc", "tmp", "root", "var/lib", "opt"] { try fm.createDirectory(atPath: "\(stage)/\(d)", withIntermediateDirectories: true) }
        try fm.copyItem(atPath: "/bin/busybox", toPath: "\(stage)/bin/busybox")
        for tool in ["sh", "ls", "cat", "env", "sleep", "echo", "mkdir", "rm", "ps", "id", "kill"] { try fm.createSymbolicLink(atPath: "\(stage)/bin/\(tool)", withDestinationPath: "busybox") }
        // Binaries the runtime binds from the host (/usr) find their loader and libraries as on Debian.
        try fm.createSymbolicLink(atPath: "\(stage)/lib", withDestinationPath: "usr/lib")
        try fm.createSymbolicLink(atPath: "\(stage)/lib64", withDestinationPath: "usr/lib64")
        try "root:x:0:0:root:/root:/bin/sh\n".write(toFile: "\(stage)/etc/passwd", atomically: true, encoding: .utf8)
        try "root:x:0:\n".write(toFile: "\(stage)/etc/group", atomically: true, encoding: .utf8)
        // vLLM without a GPU: "Failed to infer device type" (vllm/config/device.py, DeviceConfig.__post_init__).
        try """
        #!/bin/sh
        [ -x /opt/sous-sim/bin/vllm ] && exec /opt/sous-sim/bin/vllm "$@"
        echo 'RuntimeError: Failed to infer device type, please set the environment variable `VLLM_LOGGING_LEVEL=DEBUG` to turn on verbose logging to help debug the issue.' >&2
        exit 1

        """.write(toFile: "\(stage)/bin/vllm", atomically: true, encoding: .utf8)
        try """
        #!/bin/sh
        # The image's Hugging Face CLI: the simulation's hf (installed under /var/cache/sous, bound by the runtime).
        for hf in /var/cache/sous/hf/current/bin/hf; do [ -x "$hf" ] && exec "$hf" "$@"; done
        echo 'hf: the simulation has no Hugging Face CLI installed (scripts/hf-env)' >&2
        exit 127

        """.write(toFile: "\(stage)/bin/hf", atomically: true, encoding: .utf8)
        try Local.sh("chmod 0755 '\(stage)/bin/vllm' '\(stage)/bin/hf' && chmod 1777 '\(stage)/tmp'")
        let tar = "\(l.dir)/image-rootfs.tar"
        try Local.run("/bin/tar", ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-C", stage, "-cf", tar, "."])
        try? fm.removeItem(atPath: stage)
        return tar
    }

    /// A Docker daemon on this machine only for building and pushing (its own mount namespace, /run, data root),
    /// stopped and removed afterwards. `body` gets the docker CLI argv prefix that talks to it.
    static func withBuilder(_ l: SimLayout, _ body: ([String]) throws -> Void) throws {
        let dir = "\(l.dir)/builder"
        _ = try? Local.run("/bin/rm", ["-rf", dir])
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let sock = "\(dir)/docker.sock"
        let config: [String: Any] = ["iptables": false, "ip6tables": false, "bridge": "none", "ip-forward": false, "ip-masq": false,
                                     "storage-driver": "overlay2", "data-root": "\(dir)/data", "exec-root": "/run/docker", "pidfile": "/run/docker.pid",
                                     "hosts": ["unix://\(sock)"], "insecure-registries": [address], "cgroup-parent": "/sous-sim-builder"]
        try JSONSerialization.data(withJSONObject: config, options: .withoutEscapingSlashes).write(to: URL(fileURLWithPath: "\(dir)/daemon.json"))
        let pid = try Local.spawn("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c",
                                                      "mount -t tmpfs tmpfs /run && exec /usr/sbin/dockerd --config-file \(dir)/daemon.json"],
                                  output: "\(dir)/dockerd.log", detach: true)
        defer {
            Local.stop(pid, grace: 10)
            _ = try? Local.run("/bin/rm", ["-rf", dir])
        }
        for _ in 0..<400 where !FileManager.default.fileExists(atPath: sock) { usleep(25_000) }
        let docker = ["/usr/bin/docker", "-H", "unix://\(sock)"]
        guard (try? Local.run(docker[0], Array(docker.dropFirst()) + ["version"]))?.status == 0 else {
            throw UsageError("the image builder's Docker daemon did not start: \((try? String(contentsOfFile: "\(dir)/dockerd.log", encoding: .utf8))?.suffix(2000) ?? "")")
        }
        try body(docker)
    }
}
