import Foundation
import Testing
@testable import SousKit

/// A rendered script run the way a person pastes it, by `sh`: `sudo` a no-op, `docker` a function that records
/// its argv (NUL-separated, so every word comes back byte for byte) and copies of the files it would read, the
/// state directory moved into a temporary one, and PATH holding only `install`, so any other command the script
/// ran would fail with "not found" on stderr.
struct ScriptRun {
    /// Per `docker` call: its argv, the env file and the config file (when there is one) at that moment.
    var argvs: [[String]] = []
    var envFiles: [String] = []
    var configFiles: [String?] = []
    var envFileMode: Int?
    var stderr = ""
    var status: Int32 = 0

    static func run(_ script: String, key: String) throws -> ScriptRun {
        let fm = FileManager.default
        let dir = NSTemporaryDirectory() + "sous-script-\(UUID().uuidString)"
        let state = dir + "/state"
        try fm.createDirectory(atPath: state, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        try fm.createSymbolicLink(atPath: dir + "/bin/install", withDestinationPath: "/usr/bin/install")
        let preamble = """
        n=0
        sudo() { :; }
        docker() {
          n=$((n + 1))
          printf '%s\\0' docker "$@" > '\(dir)/argv.'$n
          /bin/cp '\(state)/vllm.env' '\(dir)/env.'$n
          if [ -f '\(state)/serve.yaml' ]; then /bin/cp '\(state)/serve.yaml' '\(dir)/config.'$n; fi
        }

        """
        try (preamble + script.replacingOccurrences(of: NodePaths.stateDir, with: state))
            .write(toFile: dir + "/script.sh", atomically: true, encoding: .utf8)
        var result = ScriptRun()
        let syntax = try SousKitTests.run("/bin/sh", ["-n", dir + "/script.sh"])
        guard syntax.status == 0 else {
            result.stderr = "sh -n: \(syntax.err)"
            result.status = syntax.status
            return result
        }
        let r = try SousKitTests.run("/usr/bin/env", ["-i", "PATH=\(dir)/bin", "VLLM_API_KEY=\(key)", "/bin/sh", dir + "/script.sh"])
        (result.stderr, result.status) = (r.err, r.status)
        func text(_ path: String) -> String? {
            fm.contents(atPath: path).map { String(decoding: $0, as: UTF8.self).replacingOccurrences(of: state, with: NodePaths.stateDir) }
        }
        var n = 1
        while let argv = fm.contents(atPath: "\(dir)/argv.\(n)") {
            var words = argv.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            words.removeLast()
            result.argvs.append(words.map { $0.replacingOccurrences(of: state, with: NodePaths.stateDir) })
            result.envFiles.append(text("\(dir)/env.\(n)") ?? "")
            result.configFiles.append(text("\(dir)/config.\(n)"))
            n += 1
        }
        result.envFileMode = (try? fm.attributesOfItem(atPath: state + "/vllm.env"))?[.posixPermissions] as? Int
        return result
    }

    /// Checks a deployment's shell render against what sous itself would run and upload: every argv word as the
    /// JSON render has it, every env file as `envFile(secret:)` writes it, byte for byte, nothing else run.
    static func check(_ d: Deployment, form: ServeForm = .flags, _ context: @autoclosure () -> String = "") throws {
        let renderer = Renderer(d)
        let nodes = try renderer.nodes(form: form)
        let script = form == .flags ? try RenderReport.shell(d, nodes: nodes)
            : try RenderReport.config(d, nodes: nodes, yaml: renderer.configYAML())
        let key = "k3y-'$(id)`x`\"\\"
        let r = try run(script, key: key)
        #expect(r.status == 0 && r.stderr.isEmpty, "\(context()): \(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(try RenderReport.json(d, nodes: try renderer.nodes(), configYAML: nil).utf8)) as! [String: Any]
        let jsonNodes = json["nodes"] as! [[String: Any]]
        var expectedArgv = form == .flags ? jsonNodes.map { $0["docker_argv"] as! [String] } : nodes.map(\.dockerArgv)
        // Several groups behind a router: its container comes last.
        if d.isMultiGroup, let router = d.router { expectedArgv.append(router.dockerArgv) }
        #expect(r.argvs.count == expectedArgv.count, "\(context())")
        for (i, (have, want)) in zip(r.argvs, expectedArgv).enumerated() {
            // Compare bytes: String == would call canonically equivalent spellings equal.
            #expect(have.map { Array($0.utf8) } == want.map { Array($0.utf8) }, "\(context()) node \(i): \(have) != \(want)")
        }
        for (i, (have, c)) in zip(r.envFiles, nodes).enumerated() {
            #expect(Array(have.utf8) == Array(try c.envFile(secret: c.isHead ? Secret(key) : nil).utf8), "\(context()): \(have.debugDescription)")
            // Read as Docker reads --env-file (a line each, split at the first `=`): exactly the variables the
            // JSON render lists, with its values; a value with a line break would show up here as a variable.
            var want = (jsonNodes[i]["env"] as! [String: String]).mapValues { Array($0.utf8) }
            if want["VLLM_API_KEY"] != nil { want["VLLM_API_KEY"] = Array(key.utf8) }
            // Bytes, not Characters: a combining mark after `=` would join it in one Character.
            let lines = Array(have.utf8).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
            let read = Dictionary(lines.map { line in
                (String(decoding: line.prefix { $0 != UInt8(ascii: "=") }, as: UTF8.self), Array(line.drop { $0 != UInt8(ascii: "=") }.dropFirst()))
            }, uniquingKeysWith: { a, _ in a })
            #expect(lines.count == read.count && read == want, "\(context()): node \(i) env file \(have.debugDescription)")
        }
        if form == .config {
            #expect(r.configFiles.allSatisfy { $0.map { Array($0.utf8) } == Array(renderer.configYAML().utf8) }, "\(context())")
        }
        #expect(r.envFileMode == 0o600)
    }
}

@Suite struct RenderedScriptTests {
    /// What a person pastes writes exactly the env file `sous up` uploads and runs exactly the argv it runs.
    @Test(arguments: RenderGoldenTests.cases)
    func theShellRenderRunsWhatSousRuns(recipe: String, inventory: String) throws {
        let d = try Deployment.load(recipe: "recipes/\(recipe)", inventory: "inventory/\(inventory)", relativeTo: repoRoot)
        try ScriptRun.check(d, form: .flags, "\(recipe) shell")
        try ScriptRun.check(d, form: .config, "\(recipe) config")
    }

    /// Printable hostile text that validation accepts, in every place it can reach the script.
    @Test func hostileButValidValuesStayOneWord() throws {
        var d = try Deployment.load(recipe: "recipes/gpt-oss-120b.yaml", inventory: "inventory/two-sparks.yaml", relativeTo: repoRoot)
        let nasty = #"a'b"c$(id)`id`;|&<>*?~#\ ${x} '\'' %s SOUS_ENV"#
        d.engine.env.append((name: "SOUS_TEST", value: nasty))
        d.engine.env.append((name: "SOUS_EMPTY", value: ""))
        d.engine.extraArgs.append((flag: "sous-test", value: .value(nasty)))
        d.recipe.servedModelName = "it's-$(id)"
        try ScriptRun.check(d, form: .flags)
        try ScriptRun.check(d, form: .config)
        d.inventory.launcher = .ray
        try ScriptRun.check(d, form: .flags)
    }

    /// The stub would notice: a script with an injected command fails the check.
    @Test func theHarnessSeesAnInjectedCommand() throws {
        let r = try ScriptRun.run("printf '%s\\n' A=1 >> /var/lib/sous/vllm.env\nid\ndocker run x\n", key: "k")
        #expect(r.stderr.contains("id: not found"))
        #expect(r.argvs == [["docker", "run", "x"]] && r.envFiles == ["A=1\n"])
    }
}

/// Mutations of the shipped recipes and inventories, from a fixed seed, through validation and render: each
/// outcome is refused with located errors, or renders a script whose every word is one word (run by `sh`
/// with `docker` stubbed, against the JSON render). No crash, no hang.
@Suite struct FuzzTests {
    typealias Random = SeededRandom

    static func files(_ dir: String) -> [(path: String, text: String)] {
        shippedFiles(dir).map { ("\(dir)/\($0)", (try? String(contentsOfFile: repoPath("\(dir)/\($0)"), encoding: .utf8)) ?? "") }
    }

    /// A YAML double-quoted scalar holding `s` exactly: control characters as escapes, so they reach the reader.
    static func doubleQuoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case _ where c.isControl || c == "\u{FEFF}": out += String(format: "\\x%02x", c.value)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    static let numbers = ["99999999999999999999", "-1", "0", "1e400", "-1e400", "4e18", "9223372036854775807", "-9223372036854775808",
                          "0x7fffffffffffffff", ".inf", ".nan", "1_000_000_000_000", "0.0000001", "65536.5"]
    static let wrongTypes = ["[a, b]", "{x: 1}", "~", "true", "''", "[]", "{}", "*undefined", "&a [*a]", "!!binary aGk=", "? x", "- x", "|\n  x"]

    static func hostileScalar(_ rng: inout Random, _ hostile: inout HostileStrings) -> String {
        switch rng.below(7) {
        case 0, 1: return doubleQuoted(hostile.string())
        case 2: return "'" + hostile.string().replacingOccurrences(of: "'", with: "''") + "'"
        case 3: return hostile.string()
        case 4: return rng.pick(numbers)
        case 5: return rng.pick(wrongTypes)
        default:
            let depth = 1 + rng.below(1200)
            return String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        }
    }

    /// Free text for a value validation may accept: usually printable (the render must then carry it word for
    /// word), one time in three with a control character in it, a line break most often (then it must be refused).
    static func freeText(_ rng: inout Random, _ hostile: inout HostileStrings, spaces: Bool = true) -> String {
        let text = String(String.UnicodeScalarView(hostile.string().unicodeScalars.filter {
            !$0.isControl && (spaces || !$0.properties.isWhitespace)
        }))
        guard rng.below(3) == 0 else { return text }
        return text + rng.pick(["\n", "\nLD_PRELOAD=/tmp/x.so", "\r", "\r\n", "\u{0}", "\u{1B}[2J", "\t", "\u{85}"]) + "x"
    }

    static func mutate(_ text: String, isRecipe: Bool, _ rng: inout Random, _ hostile: inout HostileStrings) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let valued = lines.indices.filter { lines[$0].contains(": ") && !lines[$0].trimmingCharacters(in: .whitespaces).hasPrefix("#") }
        switch rng.below(9) {
        case 0, 1, 2:
            let i = rng.pick(valued)
            let colon = lines[i].range(of: ": ")!
            lines[i] = String(lines[i][..<colon.upperBound]) + hostileScalar(&rng, &hostile)
        case 3:
            let i = rng.below(lines.count)
            let indent = lines[i].prefix { $0 == " " }
            let key = rng.below(2) == 0 ? doubleQuoted(hostile.string()) : rng.pick(["name", "host", "env", "nodes", "all", "hosts", "children", "vars"])
            lines.insert("\(indent)\(key): \(hostileScalar(&rng, &hostile))", at: i)
        case 4: lines.remove(at: rng.below(lines.count))
        case 5:
            let i = rng.below(lines.count)
            lines.insert(lines[i], at: i)
        default:
            // Accepted more often than not: printable hostile text where the recipe or inventory takes free text.
            if isRecipe {
                lines += ["env:", "  SOUS_FUZZ: " + doubleQuoted(freeText(&rng, &hostile)),
                          "extra_args:", "  sous_fuzz: " + doubleQuoted(freeText(&rng, &hostile))]
                if let i = lines.firstIndex(where: { $0.hasPrefix("served_model_name:") }), rng.below(2) == 0 {
                    lines[i] = "served_model_name: " + doubleQuoted(freeText(&rng, &hostile, spaces: false) + "x")
                }
            } else if let i = lines.firstIndex(where: { $0.contains("known_hosts:") }) {
                lines[i] = String(lines[i].prefix { $0 == " " }) + "known_hosts: " + doubleQuoted(freeText(&rng, &hostile))
            }
        }
        return lines.joined(separator: "\n")
    }

    enum Outcome {
        case refused([ConfigIssue])
        case accepted(Deployment)
    }

    static func load(recipe: (path: String, text: String), inventory: (path: String, text: String)) -> Outcome {
        var issues: [ConfigIssue] = []
        var r: Recipe?, i: Inventory?
        do { let x = try RecipeReader.parse(recipe.text, file: recipe.path); r = x.0; issues += x.1 } catch { issues += error.issues }
        do { let x = try InventoryReader.parse(inventory.text, file: inventory.path); i = x.0; issues += x.1 } catch { issues += error.issues }
        guard let r, let i else { return .refused(issues) }
        do { return .accepted(try Deployment.make(recipe: r, inventory: i, issues: issues)) } catch { return .refused(error.issues) }
    }

    @Test func mutatedInputIsRefusedWithALocationOrRendersWordForWord() throws {
        let recipes = Self.files("recipes"), inventories = Self.files("inventory")
        #expect(recipes.count >= 4 && inventories.count >= 2)
        var rng = Random(state: 0x5005_F022_2024)
        var hostile = HostileStrings(seed: 20_240_601)
        var accepted = 0, refused = 0
        let start = ContinuousClock.now
        for n in 0..<300 {
            var recipe = rng.pick(recipes), inventory = rng.pick(inventories)
            for _ in 0...rng.below(3) {
                if rng.below(3) == 0 {
                    inventory.text = Self.mutate(inventory.text, isRecipe: false, &rng, &hostile)
                } else {
                    recipe.text = Self.mutate(recipe.text, isRecipe: true, &rng, &hostile)
                }
            }
            let context = "case \(n) (\(recipe.path) on \(inventory.path))"
            switch Self.load(recipe: recipe, inventory: inventory) {
            case .refused(let issues):
                refused += 1
                let errors = issues.filter { $0.severity == .error }
                #expect(!errors.isEmpty, "\(context): refused without an error")
                for e in errors where e.location == nil || e.file.isEmpty {
                    Issue.record("\(context): an error without a location: \(e)\n--- recipe\n\(recipe.text)\n--- inventory\n\(inventory.text)")
                }
            case .accepted(let d):
                accepted += 1
                try ScriptRun.check(d, "\(context)\n--- recipe\n\(recipe.text)\n--- inventory\n\(inventory.text)")
            }
        }
        // The mix stays useful: both outcomes happen often.
        #expect(accepted >= 30 && refused >= 150, "accepted \(accepted), refused \(refused)")
        #expect(ContinuousClock.now - start < .seconds(60), "a hang guard, not a benchmark")
    }
}
