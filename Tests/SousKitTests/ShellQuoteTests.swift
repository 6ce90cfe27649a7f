import Foundation
import Testing
@testable import SousKit

@Suite struct ShellQuoteTests {
    @Test func exactQuoting() throws {
        #expect(try ShellQuote.quote("plain-word_1.2/x:y@z%+,") == "plain-word_1.2/x:y@z%+,")
        #expect(try ShellQuote.quote("") == "''")
        #expect(try ShellQuote.quote("it's") == #"'it'\''s'"#)
        #expect(try ShellQuote.quote("$(rm -rf /)") == "'$(rm -rf /)'")
        #expect(try ShellQuote.quote("a b") == "'a b'")
        #expect(try ShellQuote.quote("~") == "'~'")
        #expect(try ShellQuote.join(["A=1", "A=1"]) == "'A=1' A=1")
        #expect(throws: ShellQuote.Unrepresentable.self) { try ShellQuote.quote("a\u{0}b") }
    }

    /// Thousands of random and hostile strings: `sh` and `bash` must read each back byte for byte.
    @Test(arguments: ["/bin/sh", "/bin/bash"])
    func shellReadsBackEveryString(shell: String) throws {
        var gen = HostileStrings(seed: 42)
        var inputs = (0..<5000).map { _ in gen.string() }
        inputs += ["", "'", "''", "\n", "-n", "-e", "--", "\\", "\\n", "%s", "$HOME", "`id`", "*", "é\u{301}"]
        for chunk in stride(from: 0, to: inputs.count, by: 500) {
            let batch = Array(inputs[chunk..<min(chunk + 500, inputs.count)])
            let script = "printf '%s\\0' " + (try batch.map { try ShellQuote.quote($0) }.joined(separator: " "))
            let result = try run(shell, ["-c", script])
            #expect(result.status == 0, "\(result.err)")
            var parts = result.out.split(separator: 0, omittingEmptySubsequences: false).map { Data($0) }
            parts.removeLast()
            #expect(parts.count == batch.count)
            for (data, expected) in zip(parts, batch) where data != Data(expected.utf8) {
                Issue.record("\(shell) read \(String(decoding: data, as: UTF8.self).debugDescription) for \(expected.debugDescription)")
            }
        }
    }
}
