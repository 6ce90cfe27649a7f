import Foundation

/// Turns rendered node commands into what `sous render` prints: a paste-able shell script, the --config form, or JSON.
public enum RenderReport {
    /// Breaks argv into lines a person can read: each flag with its value on its own continued line.
    /// `firstLine` tokens stay together on the first line (`docker run -d --name sous-vllm`).
    public static func pretty(_ argv: [String], firstLine: Int = 1) throws(ShellQuote.Unrepresentable) -> String {
        var groups: [[String]] = []
        for (i, token) in argv.enumerated() {
            let quoted = try ShellQuote.quote(token, commandWord: i == 0)
            if i > 0, i < firstLine {
                groups[0].append(quoted)
            } else if token.hasPrefix("-") || groups.isEmpty {
                groups.append([quoted])
            } else if let last = groups.last, last.count == 1, last[0].hasPrefix("-") {
                groups[groups.count - 1].append(quoted)
            } else if let last = groups.last, !last[0].hasPrefix("-") {
                groups[groups.count - 1].append(quoted)
            } else {
                groups.append([quoted])
            }
        }
        return groups.enumerated().map { i, g in (i == 0 ? "" : "  ") + g.joined(separator: " ") }
            .joined(separator: " \\\n")
    }

    static func header(_ d: Deployment) -> String {
        let inv = d.inventory
        let version = inv.vllmVersion.map { "vLLM \($0)" } ?? "vLLM version unknown"
        return "# sous render: recipe \(d.recipe.name) on cluster \(inv.cluster) — \(inv.image) (\(version)), \(inv.launcher.rawValue) launcher, tp \(d.recipe.tensorParallelSize)\(groupsNote(d))".escapingControls + "\n"
    }

    /// `, 2 groups of 2 nodes` when there are several groups; empty otherwise.
    public static func groupsNote(_ d: Deployment) -> String {
        d.isMultiGroup ? ", \(d.groups.count) groups of \(d.groupSize) node\(d.groupSize == 1 ? "" : "s")" : ""
    }

    /// Before a group's nodes, when there are several: its name, nodes, endpoint and rendezvous.
    static func groupTitle(_ d: Deployment, _ c: NodeCommand, previous: NodeCommand?) -> String {
        guard d.isMultiGroup, previous?.group != c.group, d.groups.indices.contains(c.group) else { return "" }
        return "\n# ══ " + groupLine(d, d.groups[c.group]).escapingControls + "\n"
    }

    /// One group in a line: `group-1: spark-c (head), spark-d · API http://spark-c.local:8000 · rendezvous 192.168.100.12:29501`.
    public static func groupLine(_ d: Deployment, _ g: ServeGroup) -> String {
        let members = g.ranked.map { $0.rank == 0 ? "\($0.node.name) (head)" : $0.node.name }.joined(separator: ", ")
        let rendezvous = d.inventory.launcher == .ray ? "\(g.head.interconnectIP):\(NodePaths.rayPort)" : "\(g.head.interconnectIP):\(d.inventory.masterPort)"
        return "group \(g.name): \(members) · API \(Endpoint.baseURL(host: g.head.host, port: g.port)) · rendezvous \(rendezvous)"
    }

    static func nodeTitle(_ c: NodeCommand) -> String {
        let role = c.isHead ? "head" : "worker"
        return "# ── \(c.node.name) · \(role) · rank \(c.rank) · \(c.node.user)@\(c.node.host)".escapingControls
    }

    /// `printf '%s\n' LINE… > PATH` (`>>` to append), one quoted word a line: the shell passes each word to printf
    /// as it is, so no line can end the command or the file early (a heredoc ends at the first line equal to its
    /// delimiter).
    static func writeLines(_ lines: [String], to path: String, append: Bool) throws(ShellQuote.Unrepresentable) -> String {
        var words = ["printf '%s\\n'"]
        for line in lines { words.append(try ShellQuote.quote(line)) }
        return words.joined(separator: " \\\n  ") + (append ? " >> " : " > ") + (try ShellQuote.quote(path)) + "\n"
    }

    /// The env file written as a paste-able block: a 0600 file, the plain lines (each made by `EnvFile.line`), then
    /// the key read from the operator's own shell (printf is a shell builtin, so the key never appears in `ps`;
    /// `:?` stops at an unset or empty variable instead of writing an empty key, which vLLM reads as no key).
    static func envBlock(_ c: NodeCommand) throws(ShellQuote.Unrepresentable) -> String {
        var plain: [String] = [], out = ""
        for (name, value) in c.env {
            switch value {
            case .plain(let v): plain.append(try EnvFile.line(name, v))
            case .secret(let local):
                try EnvFile.checkName(local)
                let line = try EnvFile.line(name, "${\(local):?export \(local) first}", secret: true)
                out += "printf '%s\\n' \"\(line)\" >> \(NodePaths.envFile)   # \(Secret.redacted): export \(local) first\n"
            }
        }
        return "install -m 0600 /dev/null \(NodePaths.envFile)\n" + (try writeLines(plain, to: NodePaths.envFile, append: true)) + out
    }

    static func prepare(_ c: NodeCommand) throws(ShellQuote.Unrepresentable) -> String {
        "sudo install -d -m 0755 -o \(try ShellQuote.quote(c.node.user)) \(NodePaths.stateDir)\n"
    }

    public static func shell(_ d: Deployment, nodes: [NodeCommand]) throws(ShellQuote.Unrepresentable) -> String {
        var out = header(d)
        for (i, c) in nodes.enumerated() {
            out += groupTitle(d, c, previous: i > 0 ? nodes[i - 1] : nil)
            out += "\n" + nodeTitle(c) + "\n"
            out += (try prepare(c)) + (try envBlock(c)) + (try pretty(c.dockerArgv, firstLine: 5)) + "\n"
        }
        return out + (try routerBlock(d))
    }

    /// The router's container, after every group (it starts once a group answers /health): the command up to its
    /// image, then the worker list on one line, then a flag and its value a line.
    static func routerBlock(_ d: Deployment) throws(ShellQuote.Unrepresentable) -> String {
        guard d.isMultiGroup, let r = d.router else { return "" }
        let argv = r.dockerArgv, image = argv.count - r.routerArgv.count, workers = 1 + r.workerURLs.count
        var lines = [try ShellQuote.join(Array(argv[..<image])), try ShellQuote.join(Array(argv[image..<image + workers]))]
        for i in stride(from: image + workers, to: argv.count, by: 2) { lines.append(try ShellQuote.join(Array(argv[i..<min(i + 2, argv.count)]))) }
        return "\n" + "# ══ router on \(r.node.name) · \(r.baseURL) · vllm-router, every group's API a worker (no key: each head checks it)".escapingControls + "\n"
            + lines.joined(separator: " \\\n  ") + "\n"
    }

    public static func config(_ d: Deployment, nodes: [NodeCommand], yaml: String) throws(ShellQuote.Unrepresentable) -> String {
        var out = header(d)
        out += "\n# \(NodePaths.configFile), the same on every node:\n"
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        out += lines.map { "#   \($0)".escapingControls }.joined(separator: "\n") + "\n"
        for (i, c) in nodes.enumerated() {
            out += groupTitle(d, c, previous: i > 0 ? nodes[i - 1] : nil)
            out += "\n" + nodeTitle(c) + "\n" + (try prepare(c))
            out += try writeLines(lines, to: NodePaths.configFile, append: false)
            out += (try envBlock(c)) + (try pretty(c.dockerArgv, firstLine: 5)) + "\n"
        }
        return out + (try routerBlock(d))
    }

    struct JSONNode: Encodable {
        var name: String, host: String, user: String, role: String, rank: Int
        /// The group's name; only when there are several.
        var group: String?
        var env_file: String, env: [String: String]
        var docker_argv: [String], serve_argv: [String], command: String
    }
    struct JSONRender: Encodable {
        var cluster: String, recipe: String, image: String, vllm_version: String?, launcher: String
        var tensor_parallel_size: Int, served_model_name: String, config_yaml: String?
        var nodes: [JSONNode]
        var warnings: [String]
        /// Only when there are several groups.
        var groups: [JSONGroup]?
        var router: JSONRouter?
    }
    struct JSONRouter: Encodable {
        var node: String, base_url: String, image: String, worker_urls: [String], docker_argv: [String], command: String
    }
    struct JSONGroup: Encodable {
        var name: String, head: String, nodes: [String], port: Int, base_url: String, master_addr: String, master_port: Int
    }

    public static func json(_ d: Deployment, nodes: [NodeCommand], configYAML: String?) throws(ShellQuote.Unrepresentable) -> String {
        var jsonNodes: [JSONNode] = []
        for c in nodes {
            var env: [String: String] = [:]
            for (name, value) in c.env {
                if case .plain(let v) = value { env[name] = v } else { env[name] = Secret.redacted }
            }
            jsonNodes.append(JSONNode(name: c.node.name, host: c.node.host, user: c.node.user, role: c.isHead ? "head" : "worker",
                                      rank: c.rank, group: d.isMultiGroup ? d.groups[c.group].name : nil, env_file: NodePaths.envFile, env: env, docker_argv: c.dockerArgv,
                                      serve_argv: c.serveArgv, command: try ShellQuote.join(c.dockerArgv)))
        }
        let r = JSONRender(cluster: d.inventory.cluster, recipe: d.recipe.name, image: d.inventory.image,
                           vllm_version: d.inventory.vllmVersion?.description, launcher: d.inventory.launcher.rawValue,
                           tensor_parallel_size: d.recipe.tensorParallelSize, served_model_name: d.recipe.servedModelName,
                           config_yaml: configYAML, nodes: jsonNodes, warnings: d.warnings.map(\.description),
                           groups: d.isMultiGroup ? d.groups.map { g in
                               JSONGroup(name: g.name, head: g.head.name, nodes: g.nodes.map(\.name), port: g.port,
                                         base_url: Endpoint.baseURL(host: g.head.host, port: g.port),
                                         master_addr: g.head.interconnectIP, master_port: d.inventory.masterPort)
                           } : nil,
                           router: d.isMultiGroup ? try d.router.map { r throws(ShellQuote.Unrepresentable) in
                               JSONRouter(node: r.node.name, base_url: r.baseURL, image: r.spec.image, worker_urls: r.workerURLs,
                                          docker_argv: r.dockerArgv, command: try ShellQuote.join(r.dockerArgv))
                           } : nil)
        return encodeJSON(r)
    }
}

/// One line of key-sorted JSON (a JSON-lines record).
public func compactJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try! encoder.encode(value), as: UTF8.self)
}

/// Pretty, key-sorted JSON with unescaped slashes: stable output for scripts and tests.
public func encodeJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try! encoder.encode(value), as: UTF8.self) + "\n"
}
