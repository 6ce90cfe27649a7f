import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// The modelled `docker` on a simulated node: images with stable Ids, containers whose process is the
/// simulated vLLM, and the real CLI's output formats and error texts for everything sous relies on.
public enum SimDocker {
    static func fail(_ message: String, _ code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }
    static func out(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }

    static var imagesFile: String { "\(SimPaths.docker)/images.json" }
    static func containerDir(_ name: String) -> String { "\(SimPaths.docker)/containers/\(name)" }

    static func imageId(_ image: String) -> String { "sha256:" + sha256Hex("sim-image:" + image) }

    /// What the simulated registry offers: upstream vLLM tags and NGC vLLM tags whose version sous knows.
    static func exists(_ image: String) -> Bool { VLLMVersion.fromImage(image) != nil }

    static func loadJSON(_ path: String) -> [String: Any] {
        guard let d = FileManager.default.contents(atPath: path), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return [:] }
        return o
    }
    static func saveJSON(_ obj: Any, _ path: String) {
        let data = try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        let tmp = path + ".tmp"
        _ = FileManager.default.createFile(atPath: tmp, contents: data)
        rename(tmp, path)
    }

    public static func main(_ argv: [String]) -> Never {
        try? FileManager.default.createDirectory(atPath: "\(SimPaths.docker)/containers", withIntermediateDirectories: true)
        var args = argv
        guard !args.isEmpty else { fail("Usage:  docker [OPTIONS] COMMAND") }
        let cmd = args.removeFirst()
        switch cmd {
        case "version", "info":
            out("Client: Docker Engine - Community\n Version: 28.2.2\nServer: Docker Engine - Community (simulated by sous)\n Engine:\n  Version: 28.2.2")
        case "pull": pull(args.last ?? "")
        case "images": images()
        case "image":
            if args.first == "inspect" { inspectImage(Array(args.dropFirst())) }
            if args.first == "ls" { images() }
            if args.first == "rm" { removeImage(args.last ?? "") }
            fail("docker: 'image \(args.first ?? "")' is not a docker command.")
        case "rmi": removeImage(args.last ?? "")
        case "run": run(args)
        case "ps": ps(all: args.contains("-a") || args.contains("--all"), format: value(args, "--format"))
        case "inspect": inspect(args)
        case "stop": for n in args where !n.hasPrefix("-") { stop(n) }
        case "rm": for n in args where !n.hasPrefix("-") { remove(n, force: args.contains("-f") || args.contains("--force")) }
        case "logs": logs(args)
        default: fail("docker: '\(cmd)' is not a docker command.\nSee 'docker --help'")
        }
        exit(0)
    }

    static func value(_ args: [String], _ flag: String) -> String? {
        if let i = args.firstIndex(of: flag), i + 1 < args.count { return args[i + 1] }
        return args.first { $0.hasPrefix(flag + "=") }.map { String($0.dropFirst(flag.count + 1)) }
    }

    static func pull(_ image: String) {
        guard exists(image) else { fail("Error response from daemon: manifest for \(image) not found: manifest unknown: manifest unknown") }
        var imgs = loadJSON(imagesFile)
        let tag = ImageRef.tag(of: image) ?? "latest"
        if imgs[image] == nil {
            out("\(tag): Pulling from \(image.split(separator: ":").first ?? "")")
            let seconds = SimPaths.setting("pull_seconds", default: 0.5)
            let steps = 4
            for i in 1...steps {
                Thread.sleep(forTimeInterval: seconds / Double(steps))
                out("sim\(i): Pull complete")
            }
            imgs[image] = ["Id": imageId(image), "Created": ISO8601DateFormatter().string(from: Date())]
            saveJSON(imgs, imagesFile)
            out("Digest: sha256:\(sha256Hex("digest:" + image))\nStatus: Downloaded newer image for \(image)")
        } else {
            out("\(tag): Pulling from \(image.split(separator: ":").first ?? "")\nDigest: sha256:\(sha256Hex("digest:" + image))\nStatus: Image is up to date for \(image)")
        }
        out(image)
    }

    static func images() {
        out("REPOSITORY\tTAG\tIMAGE ID")
        for (name, v) in loadJSON(imagesFile).sorted(by: { $0.key < $1.key }) {
            let id = ((v as? [String: Any])?["Id"] as? String ?? "").dropFirst(7).prefix(12)
            out("\(name.split(separator: ":").dropLast().joined(separator: ":"))\t\(ImageRef.tag(of: name) ?? "")\t\(id)")
        }
    }

    static func removeImage(_ image: String) {
        var imgs = loadJSON(imagesFile)
        guard imgs.removeValue(forKey: image) != nil else { fail("Error response from daemon: No such image: \(image)") }
        saveJSON(imgs, imagesFile)
        out("Untagged: \(image)")
        exit(0)
    }

    static func inspectImage(_ args: [String]) -> Never {
        let names = args.enumerated().filter { i, a in !a.hasPrefix("-") && (i == 0 || !["--format", "-f"].contains(args[i - 1])) }.map(\.element)
        let imgs = loadJSON(imagesFile)
        var objects: [[String: Any]] = []
        for n in names {
            guard let v = imgs[n] as? [String: Any] else { fail("Error: No such image: \(n)") }
            objects.append(["Id": v["Id"] ?? "", "RepoTags": [n], "Created": v["Created"] ?? ""])
        }
        emit(objects, format: value(args, "--format") ?? value(args, "-f"))
        exit(0)
    }

    /// Go-template subset: `{{.A.B}}` and `{{json .A.B}}`, or the JSON array when no format is given.
    static func emit(_ objects: [[String: Any]], format: String?) {
        guard let format else {
            let data = try! JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            out(String(decoding: data, as: UTF8.self))
            return
        }
        for o in objects { out(render(format, o)) }
    }

    static func render(_ template: String, _ object: [String: Any]) -> String {
        var result = template
        while let open = result.range(of: "{{"), let close = result.range(of: "}}", range: open.upperBound..<result.endIndex) {
            var expr = result[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let asJSON = expr.hasPrefix("json ")
            if asJSON { expr = String(expr.dropFirst(5)).trimmingCharacters(in: .whitespaces) }
            var value: Any? = object
            for key in expr.split(separator: ".") { value = (value as? [String: Any])?[String(key)] }
            let text: String
            if asJSON || value is [Any] || value is [String: Any] {
                text = value.flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]) }
                    .map { String(decoding: $0, as: UTF8.self) } ?? "null"
            } else if let b = value as? Bool { text = b ? "true" : "false" } else { text = value.map { "\($0)" } ?? "<no value>" }
            result.replaceSubrange(open.lowerBound..<close.upperBound, with: text)
        }
        return result
    }

    static let valueFlags: Set<String> = ["--name", "--gpus", "--network", "--ipc", "--shm-size", "-v", "--volume", "--env-file",
                                          "--label", "-l", "--entrypoint", "--device", "--cap-add", "--ulimit", "-e", "--env", "--restart",
                                          "--memory", "--user", "-u", "-w", "--workdir", "--security-opt"]
    static let bareFlags: Set<String> = ["-d", "--detach", "--rm", "--privileged", "--init", "-t", "-i", "-it"]

    static func run(_ argv: [String]) -> Never {
        var i = 0
        var opts: [(String, String)] = []
        var bare: Set<String> = []
        while i < argv.count, argv[i].hasPrefix("-") {
            var flag = argv[i], v: String?
            if let eq = flag.firstIndex(of: "="), flag.hasPrefix("--") { v = String(flag[flag.index(after: eq)...]); flag = String(flag[..<eq]) }
            if valueFlags.contains(flag) {
                if v == nil { i += 1; guard i < argv.count else { fail("flag needs an argument: \(flag)", 125) }; v = argv[i] }
                opts.append((flag, v!))
            } else if bareFlags.contains(flag) { bare.insert(flag) } else { fail("unknown flag: \(flag)\nSee 'docker run --help'.", 125) }
            i += 1
        }
        guard i < argv.count else { fail("\"docker run\" requires at least 1 argument.", 125) }
        let image = argv[i]
        let cmd = Array(argv[(i + 1)...])
        let name = opts.last { $0.0 == "--name" }?.1 ?? "sim_\(sha256Hex(UUID().uuidString).prefix(8))"
        let dir = containerDir(name)
        if FileManager.default.fileExists(atPath: dir + "/config.json") {
            let id = loadJSON(dir + "/config.json")["Id"] as? String ?? ""
            fail("docker: Error response from daemon: Conflict. The container name \"/\(name)\" is already in use by container \"\(id)\". You have to remove (or rename) that container to be able to reuse that name.", 125)
        }
        if loadJSON(imagesFile)[image] == nil {
            FileHandle.standardError.write(Data("Unable to find image '\(image)' locally\n".utf8))
            guard exists(image) else { fail("docker: Error response from daemon: manifest for \(image) not found: manifest unknown.", 125) }
            pull(image)
        }
        var env: [String] = []
        for (flag, v) in opts where flag == "--env-file" {
            guard let text = try? String(contentsOfFile: v, encoding: .utf8) else { fail("docker: open \(v): no such file or directory.", 125) }
            env += text.split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        env += opts.filter { $0.0 == "-e" || $0.0 == "--env" }.map(\.1)
        var labels: [String: String] = [:]
        for (flag, v) in opts where flag == "--label" || flag == "-l" {
            let parts = v.split(separator: "=", maxSplits: 1)
            labels[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        let entrypoint = opts.last { $0.0 == "--entrypoint" }?.1
        if entrypoint == "hf" || entrypoint == "huggingface-cli" {
            // The image's Hugging Face CLI, in the foreground: container paths mapped back through the binds.
            let binds = opts.filter { $0.0 == "-v" || $0.0 == "--volume" }.map { $0.1.split(separator: ":").map(String.init) }.filter { $0.count >= 2 }
            func host(_ p: String) -> String {
                for b in binds where p == b[1] || p.hasPrefix(b[1] + "/") { return b[0] + p.dropFirst(b[1].count) }
                return p
            }
            var e: [String: String] = [:]
            for kv in env { let p = kv.split(separator: "=", maxSplits: 1).map(String.init); if p.count == 2 { e[p[0]] = host(p[1]) } }
            SimHF.main(cmd.map(host), env: e)
        }
        let id = sha256Hex("container:\(name):\(UUID().uuidString)")
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let log = dir + "/log"
        var pid: Int32 = 0
        let hfBind = opts.filter { $0.0 == "-v" || $0.0 == "--volume" }.map { $0.1.split(separator: ":").map(String.init) }
            .first { $0.count >= 2 && $0[1] == "/root/.cache/huggingface" }?[0]
        var processEnv = env + ["SOUS_SIM_IMAGE=\(image)", "SOUS_SIM_CONTAINER=\(name)", "PATH=/usr/local/bin:/usr/bin:/bin", hfBind.map { "SOUS_SIM_HF=\($0)" } ?? ""]
        processEnv = processEnv.filter { !$0.isEmpty }
        if entrypoint == "vllm" || (entrypoint == nil && cmd.first == "serve") {
            pid = (try? Local.spawn(Local.selfExecutable, cmd, argv0: "vllm", env: processEnv, output: log, detach: true)) ?? 0
        } else {
            let program = entrypoint ?? cmd.first ?? "sh"
            try? "exec: \"\(program)\": executable file not found in $PATH (simulated image has only vllm)\n".write(toFile: log, atomically: true, encoding: .utf8)
        }
        let config: [String: Any] = [
            "Id": id, "Name": "/\(name)", "Created": ISO8601DateFormatter().string(from: Date()),
            "Image": imageId(image), "Args": cmd, "Path": entrypoint ?? "vllm",
            "Config": ["Image": image, "Cmd": cmd, "Entrypoint": entrypoint.map { [$0] } ?? ["vllm"], "Env": env, "Labels": labels],
            "HostConfig": ["NetworkMode": opts.last { $0.0 == "--network" }?.1 ?? "default", "IpcMode": opts.last { $0.0 == "--ipc" }?.1 ?? "private",
                           "ShmSize": opts.last { $0.0 == "--shm-size" }?.1 ?? "64m",
                           "Binds": opts.filter { $0.0 == "-v" || $0.0 == "--volume" }.map(\.1)],
            "Pid": Int(pid),
        ]
        saveJSON(config, dir + "/config.json")
        out(id)
        exit(0)
    }

    /// A container's state, from its process (the simulated engine) being alive.
    static func state(_ name: String) -> [String: Any]? {
        let dir = containerDir(name)
        var c = loadJSON(dir + "/config.json")
        guard !c.isEmpty else { return nil }
        let pid = Int32(c["Pid"] as? Int ?? 0)
        let running = Local.alive(pid)
        let exitCode = (try? String(contentsOfFile: dir + "/exitcode", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? (running ? 0 : 1)
        c["State"] = ["Status": running ? "running" : "exited", "Running": running, "Pid": running ? Int(pid) : 0, "ExitCode": running ? 0 : exitCode]
        return c
    }

    static func allNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(SimPaths.docker)/containers")) ?? []).sorted()
    }

    static func ps(all: Bool, format: String?) {
        let rows = allNames().compactMap(state).filter { all || (($0["State"] as? [String: Any])?["Running"] as? Bool ?? false) }
        if let format {
            for r in rows {
                var flat = r
                flat["Names"] = (r["Name"] as? String ?? "").dropFirst().description
                flat["ID"] = String((r["Id"] as? String ?? "").prefix(12))
                flat["Image"] = (r["Config"] as? [String: Any])?["Image"] ?? ""
                flat["Status"] = ((r["State"] as? [String: Any])?["Running"] as? Bool ?? false) ? "Up" : "Exited"
                out(render(format, flat))
            }
            return
        }
        out("CONTAINER ID   IMAGE   STATUS   NAMES")
        for r in rows {
            let st = r["State"] as? [String: Any] ?? [:]
            out("\(String((r["Id"] as? String ?? "").prefix(12)))   \((r["Config"] as? [String: Any])?["Image"] ?? "")   \((st["Running"] as? Bool ?? false) ? "Up" : "Exited (\(st["ExitCode"] ?? 1))")   \((r["Name"] as? String ?? "").dropFirst())")
        }
    }

    static func inspect(_ args: [String]) -> Never {
        let format = value(args, "--format") ?? value(args, "-f")
        let names = args.enumerated().filter { i, a in !a.hasPrefix("-") && (i == 0 || !["--format", "-f", "--type"].contains(args[i - 1])) }.map(\.element)
        var objects: [[String: Any]] = []
        for n in names {
            if let s = state(n) { objects.append(s); continue }
            if let img = loadJSON(imagesFile)[n] as? [String: Any] { objects.append(["Id": img["Id"] ?? "", "RepoTags": [n]]); continue }
            if format == nil { out("[]") }
            fail("Error: No such object: \(n)")
        }
        emit(objects, format: format)
        exit(0)
    }

    static func stop(_ name: String) {
        guard let s = state(name) else { fail("Error response from daemon: No such container: \(name)") }
        Local.stop(Int32((s["Pid"] as? Int) ?? 0), grace: 10)
        try? "137\n".write(toFile: containerDir(name) + "/exitcode", atomically: true, encoding: .utf8)
        out(name)
    }

    static func remove(_ name: String, force: Bool) {
        guard let s = state(name) else { fail("Error response from daemon: No such container: \(name)") }
        if ((s["State"] as? [String: Any])?["Running"] as? Bool) == true {
            guard force else { fail("Error response from daemon: cannot remove container \"/\(name)\": container is running: stop the container before removing or force remove") }
            Local.stop(Int32((s["Pid"] as? Int) ?? 0), grace: 0.5)
        }
        try? FileManager.default.removeItem(atPath: containerDir(name))
        out(name)
    }

    static func logs(_ args: [String]) -> Never {
        guard let name = args.last, !name.hasPrefix("-") else { fail("\"docker logs\" requires exactly 1 argument.") }
        guard state(name) != nil else { fail("Error response from daemon: No such container: \(name)") }
        let text = (try? String(contentsOfFile: containerDir(name) + "/log", encoding: .utf8)) ?? ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        if let tail = value(args, "--tail").flatMap(Int.init) ?? value(args, "-n").flatMap(Int.init) { lines = Array(lines.suffix(tail)) }
        for l in lines { out(l) }
        exit(0)
    }
}

/// The modelled `nvidia-smi`: one GB10 with 128 GB of unified memory (memory fields N/A, as on a real Spark),
/// listing the simulated vLLM process while it runs.
public enum SimNvidiaSMI {
    public static func main(_ args: [String]) -> Never {
        let engines = SimDocker.allNames().compactMap(SimDocker.state).compactMap { s -> Int? in
            let st = s["State"] as? [String: Any]
            return (st?["Running"] as? Bool ?? false) ? st?["Pid"] as? Int : nil
        }
        if args.contains("-L") {
            print("GPU 0: NVIDIA GB10 (UUID: GPU-5a1b0000-0000-4000-8000-00000000\(String(format: "%04d", 1)))")
            exit(0)
        }
        if let q = args.first(where: { $0.hasPrefix("--query-gpu=") }) {
            let fields = q.dropFirst("--query-gpu=".count).split(separator: ",")
            let values = fields.map { f -> String in
                switch f { case "name": return "NVIDIA GB10"; case "index": return "0"; case "driver_version": return "580.95.05"
                case "memory.total", "memory.used", "memory.free": return "[N/A]"; default: return "[N/A]" }
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
