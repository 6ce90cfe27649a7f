import Foundation
@testable import SousKit

/// A two-node cluster scripted at the level of sous's command values: containers, pulled images, the env
/// file, the lock and the journal are state that the commands change, and the endpoint answers from that state.
final class FakeCluster: @unchecked Sendable {
    struct Rank { var running = false; var image = ""; var serveArgv: [String] = [] }

    let deployment: Deployment
    let transport: ScriptedTransport
    let mutex = NSLock()
    var ranks: [String: Rank] = [:]
    var pulled: [String: Set<String>] = [:]
    var lock: String?
    var journal = ""
    /// Images whose engine answers a tool call with prose (a gate that fails).
    var proseImages: Set<String> = []
    /// Images whose container exits right after start.
    var crashingImages: Set<String> = []
    /// Node → preflight failure text.
    var preflightFailure: [String: String] = [:]
    static let key = Secret("k-secret-4f1c2b9a")

    static func imageID(_ ref: String) -> String { "sha256:" + sha256Hex(ref) }

    init(image: String? = nil) throws {
        var d = try Deployment.load(recipe: repoPath("recipes/nemotron-3-super-nvfp4.yaml"), inventory: repoPath("inventory/two-sparks.yaml"))
        if let image { d = try Deployment.make(recipe: d.recipe, inventory: d.inventory, image: image) }
        d.engineReadyBudget = .seconds(5)   // the runners' engineTimeout below
        deployment = d
        transport = ScriptedTransport(d.inventory.nodes)
        for node in d.inventory.nodes { script(node) }
        for image in [d.inventory.image, "vllm/vllm-openai:v0.25.0"] { try scriptImage(image) }
    }

    var inv: Inventory { deployment.inventory }
    var head: String { inv.head.name }

    /// What a verified `up` leaves: every rank running the rendered command, env files in place.
    func converge() throws {
        let commands = try Renderer(deployment).nodes()
        for c in commands {
            ranks[c.node.name] = Rank(running: true, image: inv.image, serveArgv: c.containerArgs)
            pulled[c.node.name, default: []].insert(inv.image)
            transport[c.node.name].files[NodePaths.envFile] = Data(try c.envFile(secret: Self.key).utf8)
        }
    }

    func with<T>(_ body: () -> T) -> T { mutex.withLock(body) }

    func script(_ node: NodeSpec) {
        let n = transport[node.name], name = node.name
        let peers = inv.nodes.map(\.interconnectIP).filter { $0 != node.interconnectIP }
        n.on(PreflightOps.check(interface: inv.interface, memoryFraction: deployment.engine.gpuMemoryUtilization, peers: peers)) { [unowned self] _ in
            with { preflightFailure[name] }.map { .fail(13, "", stdout: $0) } ?? .ok()
        }
        // A complete one-shard checkpoint in the HF cache.
        let status = "M 134217728\nR 0123456789abcdef0123456789abcdef01234567\nF f 100 config.json\nF f 10 tokenizer.json\nF f 24 model.safetensors\nH 8 8 model.safetensors\n"
            + "\u{1e}\n{\"architectures\": [\"NemotronHForCausalLM\"]}\n\u{1e}\n\n\u{1e}\n\n"
        n.on(.shell(try! Checkpoint.statusScript(HFRepo(deployment, node: node)), timeout: nil)) { _ in .ok(status) }
        n.on(HardenOps.sshUnit()) { _ in .ok("ssh\n") }
        n.on(HardenOps.sshdState(unit: "ssh")) { _ in .ok(Harden.dropIn + "---\n-1000\n") }
        n.on(HardenOps.earlyoomState()) { _ in .ok("installed\n\(sha256Hex(Harden.earlyoomDefaults))\nenabled\nactive\n") }
        n.on(EnvFileOps.makeStateDir(owner: node.user)) { _ in .ok() }
        n.on(EnvFileOps.state()) { _ in
            guard let f = n.files[NodePaths.envFile] else { return .ok() }
            let text = String(decoding: f, as: UTF8.self)
            let rest = text.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix(EngineReady.variable + "=") }.joined(separator: "\n")
            return .ok(sha256Hex(text) + "\n600\n" + sha256Hex(rest) + "\n")
        }
        n.on(DockerOps.remove()) { [unowned self] _ in with { ranks[name] = nil }; return .ok() }
        n.on(DockerOps.current()) { [unowned self] _ in
            guard let r = with({ ranks[name] }) else { return .fail(1, "Error: No such object: sous-vllm") }
            let line = DockerOps.currentLine(imageID: Self.imageID(r.image), serveArgv: r.serveArgv)
            return .ok((r.running ? line : "false" + line.dropFirst(4)) + "\n")
        }
        n.on(DockerOps.state()) { [unowned self] _ in
            guard let r = with({ ranks[name] }) else { return .fail(1, "Error: No such object: sous-vllm") }
            return .ok(r.running ? "running 0 0\n" : "exited 0 1\n")
        }
        n.on(DockerOps.configImage()) { [unowned self] _ in with { ranks[name] }.map { .ok($0.image + "\n") } ?? .fail(1, "Error: No such object: sous-vllm") }
        n.on(DockerOps.logs(tail: 1)) { _ in .ok("INFO engine loading\n") }
        for tail in [10, 15] { n.on(DockerOps.logs(tail: tail)) { _ in .ok("INFO engine loading\nERROR the last line\n") } }
        // The lock and the journal, on the head, with the semantics of their scripts.
        n.on(prefix: Array(ClusterLock.create(.mine(what: "", ttl: .seconds(1))).argv.prefix(5))) { [unowned self] c in
            with {
                if let l = lock { return .fail(10, "", stdout: l) }
                lock = String(decoding: c.stdin ?? Data(), as: UTF8.self)
                return .ok()
            }
        }
        let dummy = Lease.mine(what: "", ttl: .seconds(1))
        n.on(prefix: Array(ClusterLock.replace(dummy, expected: "").argv.prefix(5))) { [unowned self] c in
            with {
                guard sha256Hex(lock ?? "") == c.argv[5] else { return .fail(10, "") }
                lock = String(decoding: c.stdin ?? Data(), as: UTF8.self)
                return .ok()
            }
        }
        n.on(prefix: Array(ClusterLock.release(dummy).argv.prefix(5))) { [unowned self] c in
            with { if sha256Hex(lock ?? "") == c.argv[5] { lock = nil } }
            return .ok()
        }
        n.on(prefix: Array(JournalOps.append("").argv.prefix(5))) { [unowned self] c in
            with { journal += String(decoding: c.stdin ?? Data(), as: UTF8.self) }
            return .ok()
        }
    }

    /// Pull, image ID and `docker run` for one image on every node.
    func scriptImage(_ image: String) throws {
        let d = try Deployment.make(recipe: deployment.recipe, inventory: deployment.inventory, image: image)
        for c in try Renderer(d).nodes() {
            let n = transport[c.node.name], name = c.node.name
            n.on(DockerOps.imageID(image)) { [unowned self] _ in
                with { pulled[name, default: []].contains(image) } ? .ok(Self.imageID(image) + "\n") : .fail(1, "Error: No such image: \(image)")
            }
            n.on(DockerOps.pull(image)) { [unowned self] _ in _ = with { pulled[name, default: []].insert(image) }; return .ok("Status: Downloaded newer image for \(image)\n") }
            n.on(DockerOps.run(c)) { [unowned self] _ in
                with {
                    guard ranks[name] == nil else { return .fail(125, "docker: Error response from daemon: Conflict. The container name \"/sous-vllm\" is already in use") }
                    ranks[name] = Rank(running: !crashingImages.contains(image), image: image, serveArgv: c.containerArgs)
                    return .ok(String(repeating: "c", count: 64) + "\n")
                }
            }
        }
    }

    /// The endpoint, answering from the head's container.
    lazy var probe = ScriptedProbe { [unowned self] method, url, body, bearer in
        let (up, image) = with { () -> (Bool, String) in
            let all = inv.nodes.allSatisfy { ranks[$0.name]?.running == true }
            return (all, ranks[head]?.image ?? "")
        }
        guard up else { return nil }
        let path = URLComponents(string: url)?.path ?? url
        func json(_ o: Any) -> HTTPResponse { HTTPResponse(status: 200, body: try! JSONSerialization.data(withJSONObject: o)) }
        if path == "/health" { return HTTPResponse(status: 200, "") }
        if bearer?.reveal() != Self.key.reveal() { return HTTPResponse(status: 401, #"{"error":"Unauthorized"}"#) }
        if path == "/v1/models" { return json(["object": "list", "data": [["id": deployment.recipe.servedModelName, "max_model_len": deployment.engine.maxModelLen]]]) }
        guard path == "/v1/chat/completions", let body, let req = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return HTTPResponse(status: 404, "") }
        let fp = "vllm-0.24.0-tp\(deployment.recipe.tensorParallelSize)-1a2b3c4d"
        let messages = req["messages"] as? [[String: Any]] ?? []
        var message: [String: Any] = ["role": "assistant", "content": "It is 12°C and cloudy in Zurich."]
        var finish = "stop"
        // The city the last user turn asks about (an agent session asks about another one each turn).
        let asked = (messages.last { $0["role"] as? String == "user" }?["content"] as? String ?? "").split(separator: " ")
        let city = asked.firstIndex(of: "in").flatMap { asked.indices.contains($0 + 1) ? asked[$0 + 1].trimmingCharacters(in: .punctuationCharacters) : nil } ?? "Zurich"
        if req["tools"] != nil, messages.last?["role"] as? String != "tool" {
            if proseImages.contains(image) {
                message["content"] = "I would call get_weather with location Zurich."
            } else {
                message = ["role": "assistant", "content": NSNull(),
                           "tool_calls": [["id": "chatcmpl-tool-1", "type": "function", "function": ["name": "get_weather", "arguments": "{\"location\": \"\(city)\"}"]]]]
                finish = "tool_calls"
            }
        }
        if req["stream"] as? Bool == true {
            // The same answer as an SSE stream: role, content or the call (name, then arguments), finish, usage, [DONE].
            var deltas: [[String: Any]] = [["role": "assistant", "content": ""]]
            if let c = message["content"] as? String { deltas.append(["content": c]) }
            if let call = (message["tool_calls"] as? [[String: Any]])?.first, let fn = call["function"] as? [String: Any] {
                deltas.append(["tool_calls": [["index": 0, "id": call["id"]!, "type": "function", "function": ["name": fn["name"]!]]]])
                deltas.append(["tool_calls": [["index": 0, "function": ["arguments": fn["arguments"]!]]]])
            }
            var chunks: [[String: Any]] = deltas.map { ["choices": [["index": 0, "delta": $0, "finish_reason": NSNull()]]] }
            chunks.append(["choices": [["index": 0, "delta": [String: Any](), "finish_reason": finish]]])
            chunks.append(["choices": [Any](), "usage": ["prompt_tokens": 10, "total_tokens": 30, "completion_tokens": 20], "system_fingerprint": fp])
            let text = chunks.map { "data: " + String(decoding: try! JSONSerialization.data(withJSONObject: $0), as: UTF8.self) + "\n\n" }.joined() + "data: [DONE]\n\n"
            return HTTPResponse(status: 200, body: Data(text.utf8), contentType: "text/event-stream; charset=utf-8")
        }
        return json(["id": "chatcmpl-1", "object": "chat.completion", "system_fingerprint": fp,
                     "choices": [["index": 0, "message": message, "finish_reason": finish]]])
    }

    func up(reporter: Reporter = RecordingReporter(), interruption: Interruption = Interruption()) -> UpRunner {
        var r = UpRunner(deployment: deployment, transport: transport, probe: probe, key: Self.key, reporter: reporter,
                         engineTimeout: .seconds(5), pollInterval: .milliseconds(5), checkTimeout: .seconds(5))
        r.interruption = interruption
        return r
    }

    func roll(to image: String, reporter: Reporter = RecordingReporter(), interruption: Interruption = Interruption()) -> RollRunner {
        var r = RollRunner(recipe: deployment.recipe, inventory: inv, newImage: image, transport: transport, probe: probe, key: Self.key,
                           reporter: reporter, engineTimeout: .seconds(5), checkTimeout: .seconds(5), forceUnlock: false)
        r.pollInterval = .milliseconds(5)
        r.interruption = interruption
        return r
    }

    /// Every command run on `node` whose argv starts with these words.
    func calls(_ node: String, _ prefix: String...) -> [RemoteCommand] {
        transport[node].calls.filter { $0.argv.starts(with: prefix) }
    }
}

/// Collects step lines and warnings; can act when a step is reported.
final class RecordingReporter: Reporter, @unchecked Sendable {
    let mutex = NSLock()
    private(set) var lines: [(String, StepStatus, String)] = []
    private(set) var warnings: [String] = []
    var onStep: ((String) -> Void)?

    func step(_ name: String, _ status: StepStatus, _ detail: String, elapsed: Duration) {
        mutex.withLock { lines.append((name, status, detail)) }
        onStep?(name)
    }
    func warning(_ text: String) { mutex.withLock { warnings.append(text) } }
    var steps: [String] { mutex.withLock { lines.map(\.0) } }
}
