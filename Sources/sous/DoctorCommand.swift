import ArgumentParser
import Foundation
import SousKit

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Tell which row of the seed's gotchas table you are looking at: symptom, cause, fix.",
        discussion: """
        Runs the agent checks against the head directly (and through --base-url, your public endpoint, when \
        given, to tell a reverse proxy problem apart), and the audit of the running flags (for a forced \
        --quantization). Exit 0 when nothing but notes is found, 1 otherwise.
        """
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Option(help: "The public endpoint clients use (e.g. https://llm.example.internal/v1), to test through the proxy.")
    var baseURL: String?

    @Option(help: "Seconds each request may take.")
    var timeout = DurationArg("60s")

    @Flag(help: "Print JSON: the checks (direct, and through --base-url), and each gotcha found with its symptom, cause and fix.")
    var json = false

    func run() async throws {
        let d = try deployment.load()
        let inv = d.inventory
        let key = optionalAPIKey(inv)
        let sampling = d.recipe.sampling.map { ($0.key, $0.value.value) }
        func validate(_ url: String) async -> [CheckResult] {
            await Validator(probe: URLSessionProbe(), baseURL: url, model: d.recipe.servedModelName, key: key, sampling: sampling,
                            timeout: timeout.duration, toolChoices: d.recipe.toolChoices).run()
        }
        let direct = await validate(inv.baseURL + "/v1")
        let proxied = baseURL == nil ? nil : await validate(baseURL!)
        let audit = (try? await AuditRunner(deployment: d, transport: ssh.transport(for: inv)).run())?.flatMap(\.findings) ?? []
        let found = Doctor.diagnose(direct: direct, viaProxy: proxied, audit: audit, servedName: d.recipe.servedModelName)
        if json {
            struct Found: Encodable { var gotcha: Gotcha; var note: Bool; var symptom, cause, fix: String }
            struct Report: Encodable { var checks: [CheckResult]; var via_proxy: [CheckResult]?; var found: [Found] }
            print(encodeJSON(Report(checks: direct, via_proxy: proxied,
                                    found: found.map { Found(gotcha: $0, note: $0 == .slashInModelID, symptom: $0.symptom, cause: $0.cause, fix: $0.fix) })), terminator: "")
        } else {
            for r in direct { print("\(r.passed ? "PASS" : "FAIL")  \(r.name): \(r.detail)") }
            if found.isEmpty { print("no gotcha found") }
            for g in found {
                print("\n\(g == .slashInModelID ? "note" : "FOUND"): \(g.symptom)\n  cause: \(g.cause)\n  fix:   \(g.fix)")
            }
        }
        if found.contains(where: { $0 != .slashInModelID }) { throw ExitCode(ExitStatus.checkFailed.rawValue) }
    }
}
