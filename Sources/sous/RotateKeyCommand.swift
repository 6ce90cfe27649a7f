import ArgumentParser
import Foundation
import SousKit

struct RotateKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Replace the API key on the cluster and verify that only the new one works.",
        discussion: """
        Generates a random key, writes it to --key-file (mode 0600) before touching the cluster, puts it in the \
        head's 0600 env file and restarts the engine through the gated `up` path, then checks the new key works and \
        the old one (from $VLLM_API_KEY, or the inventory's api_key_env) gets 401. If the new engine does not verify, \
        the old key is put back. The key is printed only with --print. \
        Clients read it where you put it: export VLLM_API_KEY="$(cat KEYFILE)" for sous and for OpenCode's {env:VLLM_API_KEY}.
        """
    )

    @OptionGroup var deployment: DeploymentOptions
    @OptionGroup var ssh: SSHOptions

    @Option(help: "Write the new key to this file (mode 0600).")
    var keyFile: String?

    @Flag(name: .customLong("print"), help: "Print the new key on stdout.")
    var print_ = false

    @Option(help: "How long the engine may take to become healthy.")
    var timeout = "30m"

    static func writeSecret(_ s: Secret, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw UsageError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let text = s.reveal() + "\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }

    func run() async throws {
        Signals.stopAtSafePoints()
        guard keyFile != nil || print_ else {
            throw UsageError("say where the new key goes: --key-file FILE (0600) or --print", hint: "sous rotate-key --recipe R --inventory I --key-file ~/.config/sous/key")
        }
        let d = try deployment.load()
        guard let old = try apiKey(d.inventory) else { throw UsageError("the inventory sets no api_key_env: there is no key to rotate") }
        let new = KeyRotation.newKey()
        if let keyFile { try Self.writeSecret(new, to: keyFile) }
        let result = try await KeyRotation(deployment: d, transport: ssh.transport(for: d.inventory), probe: URLSessionProbe(),
                                           reporter: LineReporter(toStderr: print_), engineTimeout: try parseDuration(timeout)).run(old: old, new: new)
        if print_ { Swift.print(new.reveal()) }
        let keyVar = d.inventory.apiKeyEnv ?? "VLLM_API_KEY"
        FileHandle.standardError.write(Data("""
        rotated: the new key is verified (\(result.fingerprint ?? "no fingerprint")), the old one gets 401.
        Clients: export \(keyVar)="$(cat \(keyFile ?? "KEYFILE"))" wherever sous and OpenCode ({env:\(keyVar)}) run.

        """.utf8))
    }
}
