import ArgumentParser
import Foundation
import SousKit
import SSH

/// SSH options shared by every command that reaches nodes.
struct SSHOptions: ParsableArguments {
    @Option(help: ArgumentHelp("known_hosts file (default: the inventory's known_hosts, else ~/.ssh/known_hosts).", valueName: "file"))
    var knownHosts: String?

    @Flag(help: "Trust on first use: add an unknown host's key to known_hosts. A changed key is still refused.")
    var acceptNew = false

    @Option(help: "How long to wait for each node's SSH connection (10s, 1m).")
    var connectTimeout = DurationArg("10s")

    @Flag(name: [.customShort("v"), .long], help: "Print every remote command as it runs: node, command line, exit status, duration (never a secret).")
    var verbose = false

    @Flag(help: "For nodes where sudo needs a password: read it once from the terminal (not echoed); it is sent only on the stdin of each sudo command (`sudo -S`), never stored, logged or put on a command line.")
    var askSudoPassword = false

    func transport(for inventory: Inventory) -> Transport {
        transport(defaultKnownHosts: inventory.knownHosts)
    }

    func transport(defaultKnownHosts: String?) -> Transport {
        var ssh = SSHTransport(knownHosts: knownHosts ?? defaultKnownHosts, acceptNew: acceptNew, connectTimeout: connectTimeout.duration,
                               onWarning: { Console.warning($0) })
        if askSudoPassword { ssh.sudoPassword = SudoPassword.read() }
        guard verbose else { return ssh }
        return LoggingTransport(ssh, logger: Console.verboseLogger())
    }
}

struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run an ad-hoc command on every node at once (like `ansible all -m raw` or pdsh).",
        discussion: """
        One argument is a shell snippet (`sous exec -i I -- 'uptime; free -g'`); several are argv, each quoted \
        exactly (`sous exec -i I -- docker ps --format '{{.Names}}'`). stdout lines are prefixed with the node \
        name on stdout, stderr lines on stderr. Exit 0 only if every node exited 0; 1 if a command failed; \
        3 if a node could not be reached.
        """
    )

    @Option(name: [.customShort("i"), .long], help: "Inventory file.")
    var inventory: String

    @Option(help: "Only these nodes (comma-separated names).")
    var nodes: String?

    @Option(help: "Seconds before the command is ended on the node.")
    var timeout: DurationArg?

    @Flag(help: "Run the command through `sudo -n`.")
    var sudo = false

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var ssh: SSHOptions

    @Argument(parsing: .postTerminator, help: "The command.")
    var command: [String] = []

    struct JSONResult: Encodable {
        var node: String, host: String
        var exit_status: Int32?, exit_signal: String?
        var stdout: String?, stderr: String?
        var duration_ms: Int
        var error: String?
    }

    func run() async throws {
        guard !command.isEmpty else { throw UsageError("no command given", hint: "sous exec -i \(inventory) -- uptime") }
        let (inv, warnings) = try InventoryReader.load(path: inventory)
        Console.warnings(warnings)
        let selected = try selectNodes(inv, nodes)
        let remote = command.count == 1
            ? RemoteCommand.shell(command[0], timeout: timeout?.duration, sudo: sudo)
            : RemoteCommand(command, timeout: timeout?.duration, sudo: sudo)
        _ = try remote.commandLine()
        let transport = ssh.transport(for: inv)
        let clock = ContinuousClock()
        let start = clock.now
        let outcomes = await fanOut(selected) { node in
            try await transport.with(node) { try await $0.run(remote) }
        }
        let elapsed = clock.now - start

        var unreachable = false, failed: [String] = []
        for o in outcomes {
            switch o.result {
            case .success(let r) where r.ok: break
            case .success(let r): failed.append("\(o.node.name) (\(r.exitSignal.map { "signal \($0)" } ?? "exit \(r.exitStatus ?? -1)"))")
            case .failure(let e):
                if (e as? SousFailure)?.exitCode == .unreachable { unreachable = true }
                failed.append("\(o.node.name) (\((e as? SSHError)?.kind.rawValue ?? "error"))")
            }
        }

        if json {
            let rows = outcomes.map { o -> JSONResult in
                let ms = Int(o.duration.components.seconds * 1000 + o.duration.components.attoseconds / 1_000_000_000_000_000)
                switch o.result {
                case .success(let r):
                    return JSONResult(node: o.node.name, host: o.node.host, exit_status: r.exitStatus, exit_signal: r.exitSignal,
                                      stdout: r.stdoutText, stderr: r.stderrText, duration_ms: ms, error: nil)
                case .failure(let e):
                    return JSONResult(node: o.node.name, host: o.node.host, exit_status: nil, exit_signal: nil, stdout: nil,
                                      stderr: nil, duration_ms: ms, error: (e as? SousFailure)?.message ?? "\(e)")
                }
            }
            print(encodeJSON(rows), terminator: "")
        } else {
            for o in outcomes {
                switch o.result {
                case .success(let r):
                    for line in r.stdoutText.split(separator: "\n", omittingEmptySubsequences: false).dropLast(r.stdoutText.hasSuffix("\n") ? 1 : 0) where !r.stdout.isEmpty {
                        print("\(o.node.name): \(line)")
                    }
                    for line in r.stderrText.split(separator: "\n", omittingEmptySubsequences: false).dropLast(r.stderrText.hasSuffix("\n") ? 1 : 0) where !r.stderr.isEmpty {
                        FileHandle.standardError.write(Data("\(o.node.name): \(line)\n".utf8))
                    }
                case .failure(let e):
                    let f = e as? SousFailure
                    Console.error(f?.message ?? "\(o.node.name): \(e)", hint: f?.hint)
                }
            }
            let ok = outcomes.count - failed.count
            let seconds = String(format: "%.2f", elapsed.seconds)
            let summary = "\(ok)/\(outcomes.count) nodes ok in \(seconds) s" + (failed.isEmpty ? "" : "; failed: " + failed.joined(separator: ", "))
            FileHandle.standardError.write(Data((summary + "\n").utf8))
        }
        if unreachable { throw ExitCode(ExitStatus.unreachable.rawValue) }
        if !failed.isEmpty { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}

/// The nodes named by --nodes (all when nil); an unknown name is a usage error.
func selectNodes(_ inv: Inventory, _ names: String?) throws -> [NodeSpec] {
    guard let names else { return inv.nodes }
    let wanted = names.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    for w in wanted where !inv.nodes.contains(where: { $0.name == w }) {
        throw UsageError("no node named `\(w)` in \(inv.file)", hint: "nodes: \(inv.nodes.map(\.name).joined(separator: ", "))")
    }
    return inv.nodes.filter { wanted.contains($0.name) }
}
