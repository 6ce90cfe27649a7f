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

    @Option(help: "How long the engine may take to become healthy (90s, 30m, 1h).")
    var timeout = DurationArg("30m")

    @Flag(help: "Print JSON on stdout (the fingerprint, the key file, the old key refused); the key itself only with --print, as `key`.")
    var json = false

    /// Writes the key with mode 0600, fsyncs and closes it, then reads it back: the cluster is not touched
    /// unless the new key is safely on disk (a full disk must not lose it).
    static func writeSecret(_ s: Secret, to path: String) throws {
        func fail(_ what: String) -> UsageError {
            UsageError("cannot write the new key to \(path): \(what): \(String(cString: strerror(errno))); nothing was changed", hint: "free space or choose another --key-file")
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw fail("open") }
        fchmod(fd, 0o600)
        let bytes = Array((s.reveal() + "\n").utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { close(fd); throw fail("write") }
            written += n
        }
        if fsync(fd) != 0 { close(fd); throw fail("fsync") }
        if close(fd) != 0 { throw fail("close") }
        guard (try? Data(contentsOf: URL(fileURLWithPath: path))) == Data(bytes) else { throw fail("reading it back gave other bytes") }
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
        // Printed before the switch: once the engine runs with it, this key must not be lost with a dropped terminal.
        if print_ && !json { FileHandle.standardOutput.write(Data((new.reveal() + "\n").utf8)) }
        let result = try await KeyRotation(deployment: d, transport: ssh.transport(for: d.inventory), probe: URLSessionProbe(),
                                           reporter: LineReporter(toStderr: print_ || json), engineTimeout: timeout.duration).run(old: old, new: new)
        let keyVar = d.inventory.apiKeyEnv ?? "VLLM_API_KEY"
        if json {
            struct Report: Encodable { var fingerprint: String?; var key_file: String?; var old_key_refused = true; var key: String? }
            print(encodeJSON(Report(fingerprint: result.fingerprint, key_file: keyFile, key: print_ ? new.reveal() : nil)), terminator: "")
            return
        }
        FileHandle.standardError.write(Data("""
        rotated: the new key is verified (\(result.fingerprint ?? "no fingerprint")), the old one gets 401.
        Clients: export \(keyVar)="$(cat \(keyFile ?? "KEYFILE"))" wherever sous and OpenCode ({env:\(keyVar)}) run.

        """.utf8))
    }
}
