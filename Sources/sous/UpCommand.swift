import ArgumentParser
import Foundation
import SousKit
import SSH

/// Progress lines: one per step, with its time; what waits (transfers, the engine's load) as a line rewritten
/// in place on a terminal, or a line every 5 s per thing otherwise.
struct LineReporter: Reporter {
    var toStderr: Bool
    let transfers = TransferPrinter()

    var handle: FileHandle { toStderr ? FileHandle.standardError : FileHandle.standardOutput }

    func step(_ name: String, _ status: StepStatus, _ detail: String, elapsed: Duration) {
        transfers.finishLine(handle)
        let mark = ["ok": "ok     ", "changed": "changed", "failed": "FAILED ", "skipped": "skipped"][status.rawValue]!
        let line = "\(mark) \(name.padding(toLength: max(15, name.count), withPad: " ", startingAt: 0)) \(String(format: "%6.2f s", elapsed.seconds))  \(detail)\n"
        handle.write(Data(line.utf8))
    }

    func progress(key: String, line: String, done: Bool) { transfers.show(key: key, line: line, done: done, handle) }

    func warning(_ text: String) {
        transfers.finishLine(handle)
        Console.warning(text)
    }
}

final class TransferPrinter: @unchecked Sendable {
    private let lock = NSLock()
    private var last: [String: ContinuousClock.Instant] = [:]
    private var open = false

    func show(key: String, line: String, done: Bool, _ h: FileHandle) {
        lock.lock(); defer { lock.unlock() }
        if isatty(h.fileDescriptor) != 0 {
            h.write(Data(("\r\u{1b}[K        " + line).utf8))
            open = true
            return
        }
        let now = ContinuousClock.now
        if let t = last[key], now - t < .seconds(5), !done { return }
        last[key] = now
        h.write(Data(("        " + line + "\n").utf8))
    }

    func finishLine(_ h: FileHandle) {
        lock.lock(); defer { lock.unlock() }
        if open { h.write(Data("\r\u{1b}[K".utf8)); open = false }
    }
}

/// The Hugging Face token from the environment variable the inventory names (hf_token_env, default HF_TOKEN).
func hfToken(_ inv: Inventory) -> Secret? {
    ProcessInfo.processInfo.environment[inv.hfTokenEnv].flatMap { $0.isEmpty ? nil : Secret($0) }
}

/// The API key from the environment variable the inventory names; never printed. Missing is a usage error.
func apiKey(_ inv: Inventory) throws -> Secret? {
    guard let name = inv.apiKeyEnv else { return nil }
    guard let key = optionalAPIKey(inv) else {
        throw UsageError("\(name) is not set: the inventory's api_key_env names it as the API key",
                         hint: "export \(name)=\"$(openssl rand -hex 32)\" (and keep it for your clients), or set api_key_env in \(inv.file)")
    }
    return key
}

/// The API key when the environment has it; nil otherwise (for commands that also work without one).
func optionalAPIKey(_ inv: Inventory) -> Secret? {
    inv.apiKeyEnv.flatMap { ProcessInfo.processInfo.environment[$0] }.flatMap { $0.isEmpty ? nil : Secret($0) }
}

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Bring the cluster up and verify it: preflight, pull, env files, workers then head, then wait and check like an agent.",
        discussion: """
        Every step first checks whether it is already done: `up` on a healthy cluster restarts nothing and \
        verifies. A node without the recipe's checkpoint gets it first (see `sous model`), unless --no-fetch. It ends with a system_fingerprint that shows tp<N> (vLLM ≥ 0.21) and the seed's four agent \
        checks, or stops with the step, the node, the cause and that node's container log. \
        The API key is read from the environment variable the inventory names (api_key_env, default VLLM_API_KEY); \
        it reaches the head only inside a 0600 env file. The result is appended to /var/lib/sous/journal.jsonl on \
        the head and to ~/.local/state/sous/journal.jsonl.

        An inventory of several tensor-parallel groups (more nodes than the recipe's tensor_parallel_size needs) \
        brings up each group this way, then vLLM's router in front of them (the inventory's `router:`), and runs the \
        checks again through the router.

        Try it on the simulated pair:  sous sim up && VLLM_API_KEY=dev sous up --recipe nemotron-3-super-nvfp4 --inventory inventory/sim.yaml
        """
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Option(help: "Override the inventory's image (a pinned tag or digest).")
    var image: String?

    @Option(help: "How long the engine may take to become healthy (90s, 30m, 1h).")
    var timeout = DurationArg("30m")

    @Option(help: "How long each verification request may take (a wedged engine never answers).")
    var checkTimeout = DurationArg("120s")

    @Flag(help: "Remove a stale cluster lock first (its holder is named).")
    var forceUnlock = false

    @Flag(help: "Start even when `sous fit` says the recipe does not fit, or when the flags are a combination the image's vLLM is known to get wrong.")
    var force = false

    @Flag(help: "Stop when a node lacks the checkpoint instead of downloading and copying it.")
    var noFetch = false

    @Option(help: "Turns of the agent session the gate ends with (streamed, each building on the last; 0: none). `sous validate --session` runs a full one.")
    var sessionTurns = 2

    @Option(help: "Tools offered in each turn of the gate's session.")
    var sessionTools = 4

    @Flag(help: "Print the result as JSON (progress goes to stderr).")
    var json = false

    func run() async throws {
        Signals.stopAtSafePoints()
        var d = try deployment.load(allowGroups: true)
        if let image { d = try Deployment.make(recipe: d.recipe, inventory: d.inventory, image: image) }
        try deployment.refuseKnownBad(d, force: force)
        let key = try apiKey(d.inventory)
        var runner = UpRunner(deployment: d, transport: ssh.transport(for: d.inventory), probe: URLSessionProbe(), key: key,
                              reporter: LineReporter(toStderr: json), engineTimeout: timeout.duration,
                              checkTimeout: checkTimeout.duration)
        runner.force = force
        runner.forceUnlock = forceUnlock
        runner.fetch = !noFetch
        runner.hfToken = hfToken(d.inventory)
        guard (0...100).contains(sessionTurns), (1...512).contains(sessionTools) else { throw UsageError("--session-turns must be 0…100 and --session-tools 1…512") }
        runner.sessionTurns = sessionTurns
        runner.sessionTools = sessionTools
        if d.isMultiGroup {
            let result = try await GroupsRunner(runner).runUp()
            if json { print(encodeJSON(result), terminator: "") } else {
                for g in result.groups {
                    print("\(g.group ?? ""): verified — \(g.fingerprint ?? "no fingerprint"), \(AgentChecks.summary(g.checks))" + (g.restarted ? "" : ", nothing restarted"))
                }
                print("\(d.inventory.cluster): \(d.recipe.servedModelName) verified through the router \(result.router) — \(result.groups.count) groups, \(AgentChecks.summary(result.checks))")
            }
            return
        }
        let result = try await runner.run()
        if json {
            print(encodeJSON(result), terminator: "")
        } else {
            let timing = (result.ready_s.map { ", ready \(Human.duration($0)) after the start" } ?? "") + (result.first_token_s.map { String(format: ", first token %.2f s", $0) } ?? "")
            let session = result.session.map { ", a \($0.count)-turn agent session" } ?? ""
            print("\(d.inventory.cluster): \(d.recipe.servedModelName) verified — \(result.fingerprint ?? "no fingerprint (vLLM < 0.21; tp checked with docker inspect and the startup log)"), \(AgentChecks.summary(result.checks))" + session + (result.restarted ? "" : ", nothing restarted") + timing)
        }
    }
}

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Run the seed's four agent checks against any OpenAI-compatible endpoint, with a diagnosis for each failure.",
        discussion: """
        1 model list (with the key; and 401 without it)  2 a get_weather tool call (tool_choice auto)  3 JSON-parseable \
        arguments  4 a tool-result round trip that ends in an answer. Then the same call and round trip streamed, read \
        the way an OpenAI SDK client reassembles them (SSE chunks, tool-call deltas merged by index, arguments parsed as \
        JSON, exactly one call with an id, finish_reason tool_calls, reasoning only in its field, no tool markup in any \
        content delta, usage on the final chunk), and a forced call for each other tool_choice mode the model handles \
        (--tool-choice, or the recipe's `tool_choice`). With --tp N, the completion's system_fingerprint must also \
        show tpN. Exit 0 when every check passes, 1 otherwise.

        --session runs a deterministic agent session instead: --turns turns (default 12), each offering --tools tools \
        (default 46, as the largest agents send), each a streamed get_weather call for another city checked as above, \
        the tool's result fed back and the streamed answer checked; the conversation grows turn by turn. It prints \
        each turn's verdict, its time to the first chunk and its tokens per second, and stops at the first failing turn.

        Example: VLLM_API_KEY=… sous validate --base-url http://spark-a:8000/v1 --model nvidia/nemotron-3-super --tp 2
        """
    )

    @Option(help: "The endpoint, e.g. http://host:8000/v1.")
    var baseURL: String

    @Option(help: "The model id (the served name).")
    var model: String

    @Option(help: "Environment variable holding the API key (none: no key is sent).")
    var apiKeyEnv = "VLLM_API_KEY"

    @Option(name: [.customShort("r"), .long], help: "Take sampling and the tool_choice modes from this recipe.")
    var recipe: String?

    @Option(help: "Require system_fingerprint to show this tensor-parallel size.")
    var tp: Int?

    @Option(help: "How long each request may take (120s, 2m).")
    var timeout = DurationArg("120s")

    @Option(help: ArgumentHelp("The tool_choice modes to check, comma-separated: auto, required, named (default: the recipe's tool_choice, else auto).", valueName: "modes"))
    var toolChoice: String?

    @Flag(help: "Skip the streamed checks.")
    var noStream = false

    @Flag(help: "Run a multi-turn agent session instead: streamed, a tool catalogue, each turn a call and its result fed back.")
    var session = false

    @Option(help: "Turns of the --session.")
    var turns = 12

    @Option(help: "Tools offered in each turn of the --session.")
    var tools = 46

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let key = ProcessInfo.processInfo.environment[apiKeyEnv].flatMap { $0.isEmpty ? nil : Secret($0) }
        var sampling: [(String, Double)] = []
        var modes: [ToolChoiceMode] = [.auto]
        if let recipe {
            let path = FileManager.default.fileExists(atPath: recipe) || recipe.contains("/") ? recipe : "recipes/\(recipe).yaml"
            let r = try RecipeReader.load(path: path).0
            sampling = r.sampling.map { ($0.key, $0.value.value) }
            modes = r.toolChoices
        }
        if let toolChoice {
            modes = try toolChoice.split(separator: ",").map { word in
                guard let m = ToolChoiceMode(rawValue: word.trimmingCharacters(in: .whitespaces)) else {
                    throw UsageError("--tool-choice: `\(word)` is not a mode", hint: "auto, required or named, comma-separated")
                }
                return m
            }
        }
        if session {
            guard (1...100).contains(turns), (1...512).contains(tools) else { throw UsageError("--turns must be 1…100 and --tools 1…512") }
            let v1 = baseURL.hasSuffix("/v1") ? baseURL : (baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL) + "/v1"
            let result = await AgentSession.run(probe: URLSessionProbe(), v1: v1, model: model, key: key, sampling: sampling,
                                                turns: turns, tools: tools, timeout: timeout.duration)
            if json {
                print(encodeJSON(result), terminator: "")
            } else {
                for t in result {
                    let ttft = t.ttftSeconds.map { String(format: "first chunk %.2f s", $0) } ?? "first chunk -"
                    let rate = t.tokensPerSecond.map { String(format: "%.0f tok/s", $0) } ?? "- tok/s"
                    print(String(format: "turn %2d  %@  %@  %@  %@", t.turn, t.passed ? "PASS" : "FAIL", ttft, rate, t.detail))
                    if let d = t.diagnosis, !t.passed { print("         cause/fix: \(d)") }
                }
                let passed = result.filter(\.passed).count
                print("\(passed)/\(turns) turns passed with \(tools) tools offered" + (result.count < turns ? " (stopped at turn \(result.count))" : ""))
            }
            if result.count < turns || result.contains(where: { !$0.passed }) { throw ExitCode(ExitStatus.checkFailed.rawValue) }
            return
        }
        let results = await Validator(probe: URLSessionProbe(), baseURL: baseURL, model: model, key: key, sampling: sampling,
                                      tensorParallel: tp, timeout: timeout.duration, toolChoices: modes, stream: !noStream).run()
        if json {
            print(encodeJSON(results), terminator: "")
        } else {
            for r in results {
                print("\(r.passed ? "PASS" : "FAIL")  \(r.name): \(r.detail)")
                if let d = r.diagnosis, !r.passed { print("      cause/fix: \(d)") }
            }
            print("\(results.filter(\.passed).count)/\(results.count) checks passed")
        }
        if results.contains(where: { !$0.passed }) { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}
