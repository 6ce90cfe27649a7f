import ArgumentParser
import Foundation
import SousKit
import SousSim
import Logging

@main
struct Sous: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sous",
        abstract: "Bring up, upgrade and keep honest a self-hosted vLLM cluster (two DGX Sparks, tensor parallel 2).",
        discussion: """
        sous reads two files: a recipe (recipes/*.yaml: the model card's parsers, memory, sampling and client limits) \
        and an inventory (inventory/*.yaml: the nodes and cluster settings), and turns them into the exact commands \
        each node runs.

        Start with:
          sous recipes                          list the shipped recipes
          sous render --recipe R --inventory I  what each node will run
          sous plan   --recipe R --inventory I  the steps of bringing it up
          sous model  --recipe R --inventory I  the checkpoint on every node
          sous up     --recipe R --inventory I  bring it up, verify it like an agent
          sous sim up                           a simulated pair to rehearse on
          sous exec   -i I -- uptime            a command on every node at once

        Exit codes: 0 ok · 1 a check failed or drift · 2 bad input or usage (nothing touched) · 3 a node could not be reached.
        """,
        version: "sous " + SousVersion.current,
        subcommands: [UpCommand.self, RollCommand.self, RollbackCommand.self, HistoryCommand.self, AuditCommand.self, HardenCommand.self, ClientCommand.self, RotateKeyCommand.self, WatchCommand.self, StatusCommand.self, DoctorCommand.self, FitCommand.self, InitCommand.self, CheckLinkCommand.self, ModelCommand.self, ValidateCommand.self, RenderCommand.self, PlanCommand.self, ExportCommand.self, ExecCommand.self, SimCommand.self, RecipesCommand.self, ParsersCommand.self]
    )

    static func main() async {
        // On a simulated node the modelled tools are links to this binary, told apart by name.
        let tool = (CommandLine.arguments[0] as NSString).lastPathComponent
        let rest = Array(CommandLine.arguments.dropFirst())
        switch tool {
        case "sous-sim-runc": SimRuntime.runtime(rest)
        case "nvidia-container-runtime-hook": SimRuntime.gpuHook(rest)
        case "nvidia-smi": SimNvidiaSMI.main(rest)
        case "vllm": SimVLLM.main(rest)
        case "systemctl": SimSystemctl.main(rest)
        case "ibdev2netdev": SimIbdev2netdev.main(rest)
        default: break
        }
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let failure as SousFailure {
            Console.error(failure.message, hint: failure.hint)
            Foundation.exit(failure.exitCode.rawValue)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            // Usage errors are exit 2 (ArgumentParser's default is 64).
            Foundation.exit(code == .validationFailure ? ExitStatus.badInput.rawValue : code.rawValue)
        }
    }
}

/// Ctrl-C / SIGTERM for the commands that change nodes and wait: the first asks the operation to stop at its
/// next safe point (it then says what it leaves, exit 130; a roll goes back to the old image first); a second
/// exits at once.
enum Signals {
    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []

    static func stopAtSafePoints() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                if Interruption.shared.requested != nil {
                    FileHandle.standardError.write(Data("interrupted again: exiting now\n".utf8))
                    exit(ExitStatus.interrupted.rawValue)
                }
                Interruption.shared.request(sig)
                FileHandle.standardError.write(Data("\ninterrupting: stopping at the next safe point (again to exit at once)\n".utf8))
            }
            source.resume()
            sources.append(source)
        }
    }
}

/// Where sous writes for people: results on stdout, problems on stderr.
enum Console {
    static func error(_ message: String, hint: String? = nil) {
        var text = "error: \(message)\n"
        if let hint { text += "hint: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }
    static func warning(_ text: String) {
        FileHandle.standardError.write(Data("warning: \(text)\n".utf8))
    }
    /// The logger behind --verbose: one line per remote command on stderr, `· NODE: …`.
    static func verboseLogger() -> Logger {
        var logger = Logger(label: "sous") { _ in VerboseHandler() }
        logger.logLevel = .debug
        return logger
    }
    static func warnings(_ issues: [ConfigIssue]) {
        for issue in issues where issue.severity == .warning {
            FileHandle.standardError.write(Data((issue.description + "\n").utf8))
        }
    }
}

/// Prints log lines for people: `· NODE: message` on stderr.
struct VerboseHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let node = event.metadata?["node"].map { "\($0): " } ?? ""
        FileHandle.standardError.write(Data("· \(node)\(event.message)\n".utf8))
    }
}
