import Foundation
import SousKit
import SousSim

/// The repository root, found from this file's path (tests read the shipped recipes and inventories).
public let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

public func repoPath(_ relative: String) -> String { "\(repoRoot)/\(relative)" }

/// The shipped recipe or inventory files (the generated sim inventory excluded).
public func shippedFiles(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: repoPath(dir))) ?? [])
        .filter { $0.hasSuffix(".yaml") && $0 != "sim.yaml" }.sorted()
}

/// The built `sous` binary, beside the test bundle in .build/<config>/.
public let sousBinary: String = {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let here = dir.appendingPathComponent("sous").path
    return FileManager.default.fileExists(atPath: here) ? here : dir.deletingLastPathComponent().appendingPathComponent("sous").path
}()

public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Runs a bash script (test setup only); throws with its output when it fails.
@discardableResult
public func sh(_ script: String) throws -> String {
    let (status, text) = try shStatus(script)
    if status != 0 { throw HarnessError("`\(script)` failed (\(status)): \(text)") }
    return text
}

/// Runs a bash script; returns its exit status (-1 when killed by a signal) and combined output.
public func shStatus(_ script: String) throws -> (Int32, String) {
    let r = try Local.run("/bin/bash", ["-c", script], check: false)
    return (r.status, r.output)
}

/// Runs the built `sous` with `args` through bash, `env` prepended (`NAME=value …`); stdout and stderr apart.
public func runSous(_ args: [String], env: String = "", cwd: String = repoRoot) throws -> (out: String, err: String, status: Int32) {
    let tmp = NSTemporaryDirectory() + "sous-run-\(UUID().uuidString)"
    defer { unlink(tmp + ".out"); unlink(tmp + ".err") }
    let quoted = try ([sousBinary] + args).map { try ShellQuote.quote($0) }.joined(separator: " ")
    let (status, _) = try shStatus("cd \(try ShellQuote.quote(cwd)) && \(env) \(quoted) > \(tmp).out 2> \(tmp).err")
    return ((try? String(contentsOfFile: tmp + ".out", encoding: .utf8)) ?? "", (try? String(contentsOfFile: tmp + ".err", encoding: .utf8)) ?? "", status)
}

/// splitmix64: the same numbers from the same seed on every machine, for tests that fuzz.
public struct SeededRandom {
    var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    public mutating func pick<T>(_ xs: [T]) -> T { xs[below(xs.count)] }
}

/// Random and hostile strings, reproducible from a seed: quotes, $( ), backticks, newlines, globs,
/// combining marks after a quote, non-ASCII.
public struct HostileStrings {
    var random: SeededRandom
    public init(seed: UInt64) { random = SeededRandom(state: seed) }
    mutating func next() -> UInt64 { random.next() }
    static let pieces = ["'", "\"", "\\", "$(", ")", "`", "$", "${x}", "\n", "\t", " ", "*", "?", "[a]", "~", "!", "#",
                         ";", "&", "|", "<", ">", "=", "-", "--x", "%", "{,}", "é", "漢字", "🚀", "\u{7f}", "\r", "\u{1}", "'\\''", "'\u{301}"]
    public mutating func string() -> String {
        let n = Int(next() % 12)
        var s = ""
        for _ in 0..<n {
            switch next() % 3 {
            case 0: s += Self.pieces[Int(next() % UInt64(Self.pieces.count))]
            case 1: s += String(UnicodeScalar(UInt8(32 + next() % 95)))
            default: s += String(UnicodeScalar(UInt32(1 + next() % 0x2FFF)).map(Character.init) ?? "x")
            }
        }
        return s
    }
}
