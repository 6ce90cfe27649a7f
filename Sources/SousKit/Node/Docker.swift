import Foundation

/// Every docker command sous runs on a node, each beside the parser of its output. Data (image names, the
/// container name) is always a separate argument.
public enum DockerOps {
    public static let container = NodePaths.container

    /// The local image ID of `image`; fails when the image is not on the node.
    public static func imageID(_ image: String) -> RemoteCommand {
        RemoteCommand(["docker", "image", "inspect", "--format", "{{.Id}}", image], timeout: .seconds(30))
    }

    public static func pull(_ image: String) -> RemoteCommand {
        RemoteCommand(["docker", "pull", image], timeout: .seconds(3600))
    }

    /// What to do about a failed pull, from Docker's own words.
    public static func pullHint(_ output: String, node: String, inventory: String, image: String) -> String {
        let text = output.lowercased()
        if text.contains("no space left on device") {
            return "\(node)'s Docker data root is full (a vLLM image is ~20 GB): `sous exec -i \(inventory) --nodes \(node) -- docker system df`, then `docker image prune` there, and `sous up` again"
        }
        if text.contains("registry-1.docker.io") {
            // A daemon with a registry mirror falls back to Docker Hub when the mirror fails, and reports the fallback's
            // error: the mirror's own (a full disk, a missing tag) is only in the daemon's log.
            return "\(node) could not pull through its registry mirror, and Docker's fallback to Docker Hub failed too: the mirror's own error (a full data root, an unknown tag) is in the Docker daemon's log on \(node) (`journalctl -u docker`); `docker system df` there shows the disk"
        }
        if text.contains("manifest unknown") || text.contains("not found") {
            return "no such tag: check `image` in \(inventory) (\(image)) against the registry's tags"
        }
        if text.contains("connection refused") || text.contains("no such host") || text.contains("timeout") || text.contains("network is unreachable") {
            return "\(node) cannot reach the registry: check its DNS, proxy and registry mirror (`docker info` there)"
        }
        return "check `image` in \(inventory) and the node's registry access"
    }

    /// `docker run -d …` exactly as `sous render` prints it.
    public static func run(_ c: NodeCommand) -> RemoteCommand {
        RemoteCommand(c.dockerArgv, timeout: .seconds(600))
    }

    public static func remove(_ name: String = container) -> RemoteCommand {
        RemoteCommand(["docker", "rm", "-f", name], timeout: .seconds(60))
    }

    /// Running, the image ID and the arguments: what decides whether a rank runs the rendered command.
    public static func current(_ name: String = container) -> RemoteCommand {
        RemoteCommand(["docker", "inspect", "--format", "{{.State.Running}} {{.Image}} {{json .Args}}", name], timeout: .seconds(30))
    }

    /// The line `current()` prints for a rank that runs `serveArgv` from `imageID`.
    public static func currentLine(imageID: String, serveArgv: [String]) -> String {
        let args = (try? JSONSerialization.data(withJSONObject: serveArgv, options: [.withoutEscapingSlashes])) ?? Data()
        return "true \(imageID) " + String(decoding: args, as: UTF8.self)
    }

    /// Turns the restart policy off: an engine that crashed at start stays down instead of crashing in a loop.
    public static func noRestart() -> RemoteCommand {
        RemoteCommand(["docker", "update", "--restart", "no", container], timeout: .seconds(30))
    }

    /// Status (`running`, `restarting`, `exited`…), restarts since it was created, the last exit code.
    public static func state() -> RemoteCommand {
        RemoteCommand(["docker", "inspect", "--format", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}", container], timeout: .seconds(30))
    }

    /// Whether `state()` says the container runs; with `fresh` (it was created by this run), also that it never
    /// exited: with a restart policy Docker starts a crashed engine again (`restarting`, and `Running` stays true),
    /// so a crash shows only in the count.
    public static func isRunning(_ r: CommandResult, fresh: Bool) -> Bool {
        let f = r.stdoutText.split(separator: " ")
        return r.ok && f.first == "running" && (!fresh || f.dropFirst().first == "0")
    }

    /// The image reference the container was started from (what a roll goes back to).
    public static func configImage() -> RemoteCommand {
        RemoteCommand(["docker", "inspect", "--format", "{{.Config.Image}}", container], timeout: .seconds(30))
    }

    /// The container's arguments as a JSON array.
    public static func args() -> RemoteCommand {
        RemoteCommand(["docker", "inspect", "--format", "{{json .Args}}", container], timeout: .seconds(30))
    }

    /// Everything `docker inspect` knows, as JSON (for `sous audit`).
    public static func inspect() -> RemoteCommand {
        // The container, then its image's own environment on a second line: a real image sets variables of its
        // own (PATH, CUDA's, vLLM's), which are not drift (found once the simulation ran real Docker).
        .shell("docker inspect --format '{{json .}}' \"$1\" && docker image inspect --format '{{json .Config.Env}}' \"$(docker inspect --format '{{.Image}}' \"$1\")\"",
               args: [container], timeout: .seconds(30))
    }

    /// The last `tail` lines of the container's log (stdout and stderr).
    public static func logs(tail: Int, _ name: String = container) -> RemoteCommand {
        RemoteCommand(["docker", "logs", "--tail", String(tail), name], timeout: .seconds(30))
    }

    /// The first `non-default args` line of the engine's log: what vLLM itself parsed at start.
    public static func startupArgsLine() -> RemoteCommand {
        .shell("docker logs \"$1\" 2>&1 | grep -m1 'non-default args'", args: [container], timeout: .seconds(60))
    }

    /// The parsed `docker inspect --format {{json .}}`, as `sous audit` compares it.
    public static func parseInspect(_ r: CommandResult, node: NodeSpec, checkpointQuantization: String?) -> RunningNode {
        let lines = r.stdout.split(separator: UInt8(ascii: "\n"))
        guard r.ok, let first = lines.first, let obj = try? JSONSerialization.jsonObject(with: Data(first)) as? [String: Any] else {
            return RunningNode(node: node, running: false, imageRef: "", imageID: "", args: [], env: [], checkpointQuantization: nil)
        }
        let config = obj["Config"] as? [String: Any] ?? [:]
        let imageEnv = Set(lines.dropFirst().first.flatMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String] } ?? [])
        let env = (config["Env"] as? [String] ?? []).filter { !imageEnv.contains($0) }.map { e -> (String, String) in
            let p = e.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(p[0]), p.count > 1 ? String(p[1]) : "")
        }
        let args = Keeper.serveArgs(obj["Args"] as? [String] ?? [])
        return RunningNode(node: node, running: (obj["State"] as? [String: Any])?["Running"] as? Bool ?? false,
                           imageRef: config["Image"] as? String ?? "", imageID: obj["Image"] as? String ?? "",
                           args: args.serve, env: env, checkpointQuantization: checkpointQuantization, kept: args.kept)
    }
}

extension CommandResult {
    /// stdout without surrounding white space: the value a one-line query printed.
    public var value: String { stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) }
    /// stdout and stderr together, as a log shows them.
    public var combined: String { stdoutText + stderrText }
}
