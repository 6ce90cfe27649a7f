import Foundation

/// The one place shell quoting lives. Every remote command sous runs is built from argv tokens joined by `shellJoin`.
public enum ShellQuote {
    /// A string a POSIX shell cannot carry in an argument (argv is NUL-terminated in C).
    public struct Unrepresentable: SousFailure, Equatable {
        public var value: String
        public var message: String { "cannot pass a value containing a NUL byte to a shell: \(value.debugDescription)" }
        public var hint: String? { "remove the NUL character from the recipe or inventory value" }
        public var exitCode: ExitStatus { .badInput }
    }

    private static func isSafe(_ s: Unicode.Scalar) -> Bool {
        switch s {
        case "a"..."z", "A"..."Z", "0"..."9", "_", "-", ".", "/", ":", "=", "@", "%", "+", ",": return true
        default: return false
        }
    }

    /// Quotes one argument so that `sh` reads it back byte for byte: safe words stay bare,
    /// anything else goes in single quotes, with each `'` written as `'\''`.
    public static func quote(_ arg: String) throws(Unrepresentable) -> String {
        try quote(arg, commandWord: false)
    }

    /// In command position `NAME=value` would be an assignment, so a word with `=` is quoted there.
    static func quote(_ arg: String, commandWord: Bool) throws(Unrepresentable) -> String {
        if arg.unicodeScalars.contains("\0") { throw Unrepresentable(value: arg) }
        if arg.isEmpty { return "''" }
        if arg.unicodeScalars.allSatisfy(isSafe), !(commandWord && arg.contains("=")) { return arg }
        // Work on Unicode scalars: a `'` followed by a combining mark is one Character, and
        // Character-level replacement would miss it and leave the quote open.
        var out = String.UnicodeScalarView()
        out.append("'")
        for scalar in arg.unicodeScalars {
            if scalar == "'" { out.append(contentsOf: "'\\''".unicodeScalars) } else { out.append(scalar) }
        }
        out.append("'")
        return String(out)
    }

    /// Joins argv into one command line for `sh -c` (what an SSH exec request carries).
    public static func join(_ argv: [String]) throws(Unrepresentable) -> String {
        var parts: [String] = []
        parts.reserveCapacity(argv.count)
        for (i, arg) in argv.enumerated() { parts.append(try quote(arg, commandWord: i == 0)) }
        return parts.joined(separator: " ")
    }
}
