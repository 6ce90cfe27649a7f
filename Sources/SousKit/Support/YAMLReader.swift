import Foundation
import Yams

/// Collects the issues found while reading one YAML file.
final class IssueSink {
    let file: String
    private(set) var issues: [ConfigIssue] = []
    init(file: String) { self.file = file }

    func error(_ node: Node?, _ path: String, _ problem: String, hint: String? = nil) {
        issues.append(ConfigIssue(.error, file: file, location: location(node), keyPath: path, problem: problem, hint: hint))
    }
    func warning(_ node: Node?, _ path: String, _ problem: String, hint: String? = nil) {
        issues.append(ConfigIssue(.warning, file: file, location: location(node), keyPath: path, problem: problem, hint: hint))
    }
    func location(_ node: Node?) -> SourceLocation? {
        guard let mark = node?.mark else { return nil }
        return SourceLocation(file: file, line: mark.line, column: mark.column)
    }
    var hasErrors: Bool { issues.contains { $0.severity == .error } }
}

/// A YAML node together with its key path, read with typed accessors that report problems instead of throwing.
struct YValue {
    let node: Node
    let path: String
    let sink: IssueSink

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    var isNull: Bool {
        if case .scalar(let s) = node { return (s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)) }
        return false
    }

    /// A mapping whose keys must all be in `allowed`; unknown keys are errors with a did-you-mean.
    func mapping(allowed: [String]?) -> YMap? {
        guard case .mapping(let mapping) = node else {
            sink.error(node, path, "expected a mapping (key: value lines), found \(kind)")
            return nil
        }
        var entries: [(String, YValue, Node)] = []
        var seen = Set<String>()
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                sink.error(keyNode, path, "keys must be plain words")
                continue
            }
            let key = keyScalar.string
            if let problem = controlCharacterProblem(key) {
                sink.error(keyNode, child(key.escapingControls), "this key " + problem, hint: Self.controlCharacterHint)
                continue
            }
            let keyPath = child(key)
            if !seen.insert(key).inserted {
                sink.error(keyNode, keyPath, "duplicate key")
                continue
            }
            if let allowed, !allowed.contains(key) {
                var hint = "allowed keys here: \(allowed.joined(separator: ", "))"
                if let guess = didYouMean(key, in: allowed) { hint = "did you mean `\(guess)`?" }
                sink.error(keyNode, keyPath, "unknown key", hint: hint)
                continue
            }
            entries.append((key, YValue(node: valueNode, path: keyPath, sink: sink), keyNode))
        }
        return YMap(node: node, path: path, sink: sink, entries: entries)
    }

    var kind: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let s): return "`\(s.string.escapingControls)`"
        case .alias: return "an alias"
        }
    }

    /// Any scalar as written (numbers keep their spelling, so `0.20` stays `0.20`). Every text value of a recipe
    /// or an inventory is read here, so this is the one place that refuses control characters: a line break, a
    /// NUL or an escape sequence has no place in a name, an address or a flag value, and could end a line of
    /// what sous writes on a node.
    func string() -> String? {
        guard case .scalar(let s) = node, !isNull else {
            sink.error(node, path, "expected a text value, found \(isNull ? "nothing" : kind)")
            return nil
        }
        if let problem = controlCharacterProblem(s.string) {
            sink.error(node, path, "`\(s.string.escapingControls)` " + problem, hint: Self.controlCharacterHint)
            return nil
        }
        return s.string
    }

    static let controlCharacterHint = "write the value on one line, without escapes such as \\n, \\t or \\0 (a `>` or `|` block ends in a line break: use `>-`)"

    func int(range: ClosedRange<Int>? = nil) -> Int? {
        guard case .scalar(let s) = node, let value = Int(s.string.replacingOccurrences(of: "_", with: "")), s.style == .plain else {
            sink.error(node, path, "expected a whole number, found \(kind)")
            return nil
        }
        if let range, !range.contains(value) {
            sink.error(node, path, "\(value) is out of range \(range.lowerBound)…\(range.upperBound)")
            return nil
        }
        return value
    }

    func double() -> Double? {
        guard case .scalar(let s) = node, s.style == .plain, let value = Double(s.string), value.isFinite else {
            sink.error(node, path, "expected a number, found \(kind)")
            return nil
        }
        return value
    }

    func bool() -> Bool? {
        guard case .scalar(let s) = node, s.style == .plain else {
            sink.error(node, path, "expected true or false, found \(kind)")
            return nil
        }
        switch s.string {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default:
            sink.error(node, path, "expected true or false, found \(kind)")
            return nil
        }
    }

    func sequence() -> [YValue]? {
        guard case .sequence(let seq) = node else {
            sink.error(node, path, "expected a list, found \(kind)")
            return nil
        }
        return seq.enumerated().map { YValue(node: $1, path: "\(path)[\($0)]", sink: sink) }
    }

    var location: SourceLocation? { sink.location(node) }
}

/// A mapping read with `YValue.mapping(allowed:)`; entries keep file order.
struct YMap {
    let node: Node
    let path: String
    let sink: IssueSink
    let entries: [(key: String, value: YValue, keyNode: Node)]

    subscript(_ key: String) -> YValue? {
        guard let value = entries.first(where: { $0.key == key })?.value, !value.isNull else { return nil }
        return value
    }

    func required(_ key: String, what: String? = nil) -> YValue? {
        if let value = self[key] { return value }
        let keyPath = path.isEmpty ? key : "\(path).\(key)"
        sink.error(node, keyPath, "missing required key" + (what.map { " (\($0))" } ?? ""))
        return nil
    }
}

/// Why a text cannot be a value: it holds a control character (C0 such as CR, LF, NUL or tab, DEL, or C1).
func controlCharacterProblem(_ text: String) -> String? {
    guard let c = text.unicodeScalars.first(where: \.isControl) else { return nil }
    let name = ["\n": "a line feed", "\r": "a carriage return", "\0": "a NUL", "\t": "a tab"][c] ?? "a control character"
    return "contains \(name) (U+\(String(format: "%04X", c.value))): values must be one line of printable text"
}

extension Unicode.Scalar {
    /// C0, DEL and C1: what a terminal, a shell line or an env file line could read as something else.
    var isControl: Bool { properties.generalCategory == .control }
}

extension String {
    /// The text with control characters shown as `\u{A}`, for messages and comments that echo input.
    var escapingControls: String {
        guard unicodeScalars.contains(where: \.isControl) else { return self }
        var out = String.UnicodeScalarView()
        for s in unicodeScalars {
            if s.isControl { out.append(contentsOf: "\\u{\(String(s.value, radix: 16, uppercase: true))}".unicodeScalars) } else { out.append(s) }
        }
        return String(out)
    }

    /// The whole text matches the ICU pattern: anchored with `\A…\z`, because `$` also matches before a
    /// trailing line break (`^x$` accepts "x\n"). Every validating pattern goes through here.
    func matchesWhole(_ pattern: String) -> Bool {
        range(of: "\\A(?:" + pattern + ")\\z", options: .regularExpression) != nil
    }
}

/// Parses YAML text into a root value, reporting syntax errors with their position.
func parseYAML(_ text: String, sink: IssueSink) -> YValue? {
    do {
        guard let node = try Yams.compose(yaml: text) else {
            sink.error(nil, "", "the file is empty")
            return nil
        }
        return YValue(node: node, path: "", sink: sink)
    } catch let error as YamlError {
        sink.issues_append_syntax(error)
        return nil
    } catch {
        sink.error(nil, "", "not valid YAML: \(error)")
        return nil
    }
}

extension IssueSink {
    fileprivate func issues_append_syntax(_ error: YamlError) {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            issues.append(ConfigIssue(file: file, location: SourceLocation(file: file, line: mark.line, column: mark.column), keyPath: "", problem: "not valid YAML: \(problem)"))
        case .composer(_, let problem, let mark, _):
            issues.append(ConfigIssue(file: file, location: SourceLocation(file: file, line: mark.line, column: mark.column), keyPath: "", problem: "not valid YAML: \(problem)"))
        case .reader(let problem, let offset, let value, let yaml):
            // A byte libyaml refuses (a raw control character, invalid UTF-8), at its byte offset.
            let location = offset.map { offset in
                let lines = yaml.utf8.prefix(offset).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
                return SourceLocation(file: file, line: lines.count, column: String(decoding: lines.last!, as: UTF8.self).unicodeScalars.count + 1)
            }
            issues.append(ConfigIssue(file: file, location: location, keyPath: "", problem: "not valid YAML: \(problem) (U+\(String(format: "%04X", value)))",
                                      hint: "only printable text, tabs and line breaks may appear in a YAML file; remove the character"))
        case .duplicatedKeysInMapping(let duplicates, let context):
            issues.append(ConfigIssue(file: file, location: SourceLocation(file: file, line: context.mark.line, column: context.mark.column), keyPath: duplicates.joined(separator: ", ").escapingControls, problem: "duplicate key"))
        default:
            issues.append(ConfigIssue(file: file, location: nil, keyPath: "", problem: "not valid YAML: \(error)"))
        }
    }
}

/// Reads a file as UTF-8 text, as an issue when it cannot be read.
func readText(_ path: String, sink: IssueSink) -> String? {
    guard let data = FileManager.default.contents(atPath: path) else {
        sink.error(nil, "", "cannot read the file (does it exist?)")
        return nil
    }
    guard let text = String(data: data, encoding: .utf8) else {
        sink.error(nil, "", "the file is not UTF-8 text")
        return nil
    }
    return text
}
