import Foundation

/// The one place shell quoting lives. Every remote command sous runs is built from argv tokens joined by `shellJoin`.
public enum ShellQuote {
    /// A string what sous writes cannot carry: a NUL in a shell argument (argv is NUL-terminated in C), a line
    /// break or a NUL in a Docker env file line.
    public struct Unrepresentable: SousFailure, Equatable {
        /// The value as it may be shown ([REDACTED] for a secret).
        public var value: String
        public var problem = "cannot pass a value containing a NUL byte to a shell"
        public var message: String { "\(problem): \(value.debugDescription)" }
        public var hint: String? { "remove the character from the recipe, the inventory or the environment variable" }
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
