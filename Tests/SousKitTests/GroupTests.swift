import Foundation
import Testing
@testable import SousKit
import SousTestSupport

/// Several tensor-parallel groups in one inventory: formed from consecutive nodes or named under `groups:`,
/// each rendering its own rendezvous and API, with file:line errors for a `groups:` that cannot work.
@Suite struct GroupTests {
    /// `goodInventory` (a, b) plus c and d on another link.
    static let fourNodes = goodInventory
        + "  - name: c\n    host: 10.0.0.3\n    user: spark\n    interconnect_ip: 192.168.101.10\n"
        + "  - name: d\n    host: 10.0.0.4\n    user: spark\n    interconnect_ip: 192.168.101.11\n"

    func deployment(_ inventory: String, recipe: String = goodRecipe) throws(ConfigErrors) -> Deployment {
        let r = try RecipeReader.parse(recipe, file: "r.yaml").0
        let i = try InventoryReader.parse(inventory, file: "i.yaml").0
        return try Deployment.make(recipe: r, inventory: i)
    }

    func issues(_ inventory: String, recipe: String = goodRecipe) -> [ConfigIssue] {
        do { return try deployment(inventory, recipe: recipe).warnings } catch { return error.issues }
    }

    func serve(_ c: NodeCommand) throws -> String { try ShellQuote.join(c.serveArgv) }

    @Test func fourNodesFormTwoPairsOfConsecutiveNodes() throws {
        let d = try deployment(Self.fourNodes)
        #expect(d.isMultiGroup && d.groupSize == 2)
        #expect(d.groups.map(\.name) == ["group-0", "group-1"])
        #expect(d.groups.map { $0.nodes.map(\.name) } == [["a", "b"], ["c", "d"]])
        let nodes = try Renderer(d).nodes()
        #expect(nodes.map(\.node.name) == ["a", "b", "c", "d"])
        #expect(nodes.map(\.rank) == [0, 1, 0, 1])
        #expect(nodes.map(\.group) == [0, 0, 1, 1])
        // Each group meets at its own head, and each head serves the API.
        #expect(try serve(nodes[0]).hasSuffix("--nnodes 2 --node-rank 0 --master-addr 192.168.100.10 --master-port 29501 --host 0.0.0.0 --port 8000"))
        #expect(try serve(nodes[1]).hasSuffix("--nnodes 2 --node-rank 1 --master-addr 192.168.100.10 --master-port 29501 --headless"))
        #expect(try serve(nodes[2]).hasSuffix("--nnodes 2 --node-rank 0 --master-addr 192.168.101.10 --master-port 29501 --host 0.0.0.0 --port 8000"))
        #expect(try serve(nodes[3]).hasSuffix("--nnodes 2 --node-rank 1 --master-addr 192.168.101.10 --master-port 29501 --headless"))
        // The key goes to every group's head, and to no worker.
        #expect(nodes.map { $0.env.contains { $0.name == "VLLM_API_KEY" } } == [true, false, true, false])
        #expect(nodes.map { $0.dockerArgv.contains("sous.group=group-\($0.group)") } == [true, true, true, true])
        #expect(nodes.allSatisfy { $0.dockerArgv.contains("sous.rank=\($0.rank)") })
    }

    /// The head comes first in its group even when it is not first in the file (as `Inventory.ranked`).
    @Test func theHeadLeadsTheFirstGroupWhereverItIsWritten() throws {
        let inv = Self.fourNodes.replacingOccurrences(of: "  - name: a\n", with: "  - name: a\n    role: worker\n")
            .replacingOccurrences(of: "  - name: c\n", with: "  - name: c\n    role: head\n")
        let d = try deployment(inv)
        #expect(d.groups.map { $0.nodes.map(\.name) } == [["c", "a"], ["b", "d"]])
    }

    @Test func nodesThatAreNotWholeGroupsKeepTheOneGroupError() {
        let inv = Self.fourNodes + "  - name: e\n    host: 10.0.0.5\n    user: spark\n    interconnect_ip: 192.168.102.10\n"
        #expect(onlyError(issues(inv)) ==
            "r.yaml:13:23: error: tensor_parallel_size: 2 does not match the inventory: 5 nodes × 1 GPU = 5 (i.yaml)\n  hint: use an inventory with 2 nodes, or a recipe with tensor_parallel_size 5")
    }

    @Test func namedGroupsRenderInTheirOrderWithTheirPorts() throws {
        let inv = Self.fourNodes + """
        groups:
          - name: left
            nodes: [a, c]
          - name: right
            nodes: [d, b]
            port: 8001

        """
        let d = try deployment(inv)
        #expect(d.groups.map { $0.nodes.map(\.name) } == [["a", "c"], ["d", "b"]])
        let nodes = try Renderer(d).nodes()
        #expect(try serve(nodes[1]).hasSuffix("--master-addr 192.168.100.10 --master-port 29501 --headless"))
        #expect(try serve(nodes[2]).hasSuffix("--nnodes 2 --node-rank 0 --master-addr 192.168.101.11 --master-port 29501 --host 0.0.0.0 --port 8001"))
        #expect(nodes[3].node.name == "b" && nodes[3].rank == 1)
        let shell = try RenderReport.shell(d, nodes: nodes)
        #expect(shell.hasPrefix("# sous render: recipe demo on cluster lab — vllm/vllm-openai:v0.24.0 (vLLM 0.24.0), mp launcher, tp 2, 2 groups of 2 nodes\n"))
        #expect(shell.contains("\n# ══ group left: a (head), c · API http://10.0.0.1:8000 · rendezvous 192.168.100.10:29501\n\n# ── a · head · rank 0"))
        #expect(shell.contains("\n# ══ group right: d (head), b · API http://10.0.0.4:8001 · rendezvous 192.168.101.11:29501\n\n# ── d · head · rank 0"))
        let json = try JSONSerialization.jsonObject(with: Data(RenderReport.json(d, nodes: nodes, configYAML: nil).utf8)) as! [String: Any]
        let groups = json["groups"] as! [[String: Any]]
        #expect(groups.map { $0["name"] as! String } == ["left", "right"])
        #expect(groups.map { $0["base_url"] as! String } == ["http://10.0.0.1:8000", "http://10.0.0.4:8001"])
        #expect((json["nodes"] as! [[String: Any]]).map { $0["group"] as! String } == ["left", "left", "right", "right"])
    }

    /// One named group of every node is the single-group case: the render is the same as without `groups:`.
    @Test func oneNamedGroupRendersLikeNone() throws {
        let plain = try deployment(goodInventory)
        let named = try deployment(goodInventory + "groups:\n  - name: pair\n    nodes: [a, b]\n")
        #expect(!named.isMultiGroup)
        #expect(try RenderReport.shell(named, nodes: Renderer(named).nodes()) == RenderReport.shell(plain, nodes: Renderer(plain).nodes()))
        #expect(try RenderReport.json(named, nodes: Renderer(named).nodes(), configYAML: nil) == RenderReport.json(plain, nodes: Renderer(plain).nodes(), configYAML: nil))
        #expect(UpPlan.text(named, steps: UpPlan.steps(named)) == UpPlan.text(plain, steps: UpPlan.steps(plain)))
    }

    /// Every mistake in `groups:` is named with its line, column and key, all at once.
    @Test func namedGroupErrorsCarryTheirLines() {
        // Line numbers: goodInventory is 14 lines, fourNodes adds 8, so `groups:` is line 23.
        let inv = Self.fourNodes + """
        groups:
          - name: one
            nodes: [a, bb]
          - name: one
            nodes: [c, a]
          - name: "bad name"
            nodes: []
            port: 70000

        """
        let errors = issues(inv).filter { $0.severity == .error }.map(\.description)
        #expect(errors.contains("i.yaml:25:16: error: groups[0].nodes[1]: no node named `bb` in `nodes:`\n  hint: did you mean `b`?"), "\(errors)")
        #expect(errors.contains("i.yaml:26:11: error: groups[1].name: `one` is also the name of groups[0] (line 24)"), "\(errors)")
        #expect(errors.contains("i.yaml:27:16: error: groups[1].nodes[1]: `a` is already in group one (line 25)\n  hint: a node runs one rank of one group"), "\(errors)")
        #expect(errors.contains("i.yaml:28:11: error: groups[2].name: group names are letters, digits, '.', '_' or '-'"), "\(errors)")
        #expect(errors.contains("i.yaml:29:12: error: groups[2].nodes: an empty list"), "\(errors)")
        #expect(errors.contains("i.yaml:30:11: error: groups[2].port: 70000 is out of range 1…65535"), "\(errors)")
        #expect(errors.contains("i.yaml:24:3: error: groups: node `b` is in no group\n  hint: add it to a group's `nodes:`, or remove it from `nodes:`"), "\(errors)")
        #expect(errors.contains("i.yaml:24:3: error: groups: node `d` is in no group\n  hint: add it to a group's `nodes:`, or remove it from `nodes:`"), "\(errors)")
        #expect(errors.count == 8, "\(errors)")
    }

    @Test func theFirstGroupIsHeadedByTheInventorysHead() {
        let inv = Self.fourNodes + "groups:\n  - name: one\n    nodes: [b, a]\n  - name: two\n    nodes: [c, d]\n"
        #expect(onlyError(issues(inv)) ==
            "i.yaml:24:5: error: groups[0].nodes[0]: the first group must be headed by `a`, the inventory's head (it holds the cluster lock and the journal); found `b`\n  hint: list a first in the first group, or give `role: head` to b")
    }

    @Test func aGroupOfTheWrongSizeIsAnError() {
        let inv = Self.fourNodes + "groups:\n  - name: one\n    nodes: [a, b, c]\n  - name: two\n    nodes: [d]\n"
        let errors = issues(inv).filter { $0.severity == .error }.map(\.description)
        #expect(errors == [
            "i.yaml:24:5: error: groups.one: 3 nodes × 1 GPU = 3, but r.yaml has tensor_parallel_size 2\n  hint: every group holds 2 nodes (one copy of the model)",
            "i.yaml:26:5: error: groups.two: 1 node × 1 GPU = 1, but r.yaml has tensor_parallel_size 2\n  hint: every group holds 2 nodes (one copy of the model)",
        ])
    }

    /// Two heads behind one management address (nodes told apart by their SSH port) need two API ports.
    @Test func twoHeadsOnOneAddressNeedTwoPorts() throws {
        let shared = Self.fourNodes.replacingOccurrences(of: "host: 10.0.0.3", with: "host: 10.0.0.1\n    port: 2222")
            + "groups:\n  - name: one\n    nodes: [a, b]\n  - name: two\n    nodes: [c, d]\n"
        #expect(onlyError(issues(shared)) ==
            "i.yaml:27:5: error: groups[1].port: the heads of one and two would both serve on 10.0.0.1:8000\n  hint: give one of the groups its own `port:`")
        let d = try deployment(shared + "    port: 8001\n")
        #expect(d.groups.map(\.port) == [8000, 8001])
    }

    @Test func groupsIsAListOfGroups() {
        #expect(onlyError(issues(goodInventory + "groups: []\n")) ==
            "i.yaml:15:9: error: groups: an empty list\n  hint: name each tensor-parallel group, or remove `groups:` to form groups of consecutive nodes")
        #expect(onlyError(issues(goodInventory + "groups:\n  - name: g\n    nodes: [a, b]\n    size: 2\n")) ==
            "i.yaml:18:5: error: groups[0].size: unknown key\n  hint: allowed keys here: name, nodes, port")
    }

    @Test func anAnsibleInventoryNamesGroupsInItsVars() throws {
        let ansible = """
        all:
          vars:
            cluster: lab
            image: vllm/vllm-openai:v0.24.0
            interconnect: {interface: enp1s0f1np1}
            groups:
              - {name: one, nodes: [a, b]}
              - {name: two, nodes: [c, d]}
          hosts:
            a: {ansible_host: 10.0.0.1, ansible_user: spark, interconnect_ip: 192.168.100.10}
            b: {ansible_host: 10.0.0.2, ansible_user: spark, interconnect_ip: 192.168.100.11}
            c: {ansible_host: 10.0.0.3, ansible_user: spark, interconnect_ip: 192.168.101.10}
            d: {ansible_host: 10.0.0.4, ansible_user: spark, interconnect_ip: 192.168.101.11}

        """
        let d = try deployment(ansible)
        #expect(d.groups.map(\.name) == ["one", "two"])
        #expect(d.groups.map(\.head.name) == ["a", "c"])
    }

    @Test func thePlanShowsEachGroup() throws {
        let d = try deployment(Self.fourNodes)
        let text = UpPlan.text(d, steps: UpPlan.steps(d))
        #expect(text.hasPrefix("""
            sous plan: recipe demo on cluster lab (4 nodes in 2 groups of 2, tp 2, vllm/vllm-openai:v0.24.0)
              group group-0: a (head), b · API http://10.0.0.1:8000 · rendezvous 192.168.100.10:29501
              group group-1: c (head), d · API http://10.0.0.3:8000 · rendezvous 192.168.101.10:29501

            """))
        let steps = Dictionary(uniqueKeysWithValues: UpPlan.steps(d).map { ($0.id, $0) })
        #expect(steps["start.workers"]?.nodes == ["b", "d"])
        #expect(steps["start.head"]?.nodes == ["a", "c"])
        #expect(steps["start.head"]?.title == "start each group's head (rank 0, API on :8000)")
        #expect(steps["verify"]?.nodes == ["a", "c"])
        #expect(steps["journal"]?.nodes == ["a"])
    }

    /// Commands that do not run groups yet refuse them before touching anything; render and plan show them.
    @Test func commandsThatRunOneGroupRefuseSeveral() throws {
        let audit = try sous(["audit", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/four-sparks.yaml"])
        #expect(audit.status == 2)
        #expect(audit.err == "error: inventory/four-sparks.yaml forms 2 tensor-parallel groups of 2 nodes; this command runs on one group only so far\nhint: `sous up`, `sous roll`, `sous render`, `sous plan` and `sous export lws` take every group; for the rest use an inventory of 2 nodes (one group)\n")
        let plan = try sous(["plan", "--recipe", "nemotron-3-super-nvfp4", "--inventory", "inventory/four-sparks.yaml"])
        #expect(plan.status == 0 && plan.out.contains("  group pair-cd: spark-c (head), spark-d · API http://spark-c.local:8000"), "\(plan.err)")
    }
}

/// The router in front of several groups: `router:` as written and refused, its rendered container, its control
/// routes, and the drain that reads vLLM's gauges.
@Suite struct RouterTests {
    static let router = "router:\n  node: a\n  image: registry.example/vllm-router:0.1.17\n"

    func deployment(_ inventory: String) throws(ConfigErrors) -> Deployment {
        try GroupTests().deployment(inventory)
    }

    @Test func theRouterFrontsEveryGroupsHead() throws {
        let d = try deployment(GroupTests.fourNodes + Self.router)
        let r = try #require(d.router)
        #expect(r.baseURL == "http://10.0.0.1:8080")
        #expect(r.workerURLs == ["http://10.0.0.1:8000", "http://10.0.0.3:8000"])
        #expect(try ShellQuote.join(r.dockerArgv) == "docker run -d --name sous-router --network host --restart unless-stopped registry.example/vllm-router:0.1.17 "
            + "--worker-urls http://10.0.0.1:8000 http://10.0.0.3:8000 --host 0.0.0.0 --port 8080 --policy cache_aware --health-check-interval-secs 5 --worker-startup-check-interval 1")
        // No key on its command line: the heads check the one each client sends.
        #expect(!r.dockerArgv.joined().contains("api-key"))
        #expect(UpPlan.steps(d).first { $0.id == "router" }?.nodes == ["a"], "\(UpPlan.steps(d).map(\.id))")
        // One group is one deployment of its own, rendered as the whole renders it.
        let whole = try Renderer(d).nodes(), second = try Renderer(d.group(d.groups[1])).nodes()
        #expect(second.map(\.serveArgv) == Array(whole[2...]).map(\.serveArgv))
        #expect(d.group(d.groups[1]).inventory.baseURL == "http://10.0.0.3:8000")
    }

    @Test func aRouterThatCannotWorkIsRefusedWithItsLine() {
        let bad: [(String, String)] = [
            ("router:\n  node: z\n  image: r/vllm-router:0.1.17\n", "error: router.node: no node named `z` in `nodes:`"),
            ("router:\n  node: a\n  image: r/vllm-router\n", "error: router.image: `r/vllm-router` is not pinned"),
            ("router:\n  node: a\n  port: 8000\n  image: r/vllm-router:0.1.17\n", "error: router.port: 8000 is the port a group's head serves its API on, on a"),
            ("router:\n  node: a\n  image: r/vllm-router:0.1.17\n  policy: fastest\n", "error: router.policy: `fastest` is not a vllm-router policy"),
            ("router:\n  node: a\n  image: r/vllm-router:0.1.17\n  api_key: x\n", "api_key"),
        ]
        for (text, expected) in bad {
            let issues = GroupTests().issues(GroupTests.fourNodes + text)
            #expect(issues.contains { $0.severity == .error && $0.description.contains(expected) }, "\(text): \(issues.map(\.description))")
        }
    }

    @Test func severalGroupsWithoutARouterAreRefusedBeforeAnyNode() throws {
        let d = try deployment(GroupTests.fourNodes)
        let transport = ScriptedTransport(d.inventory.nodes)
        let up = UpRunner(deployment: d, transport: transport, probe: ScriptedProbe { _, _, _, _ in nil }, key: nil, reporter: RecordingReporter())
        #expect(throws: UsageError.self) { try GroupsRunner(up).router() }
        #expect(transport["a"].calls.isEmpty)
    }

    @Test func theControlRoutesCarryTheWorkerEscaped() {
        let c = RouterControl(probe: ScriptedProbe { _, _, _, _ in nil }, baseURL: "http://10.0.0.1:8080")
        #expect(c.url("/add_worker", worker: "http://10.0.0.3:8000") == "http://10.0.0.1:8080/add_worker?url=http%3A%2F%2F10.0.0.3%3A8000")
        #expect(c.url("/remove_worker", worker: "http://[fe80::1%25eth0]:8000&x=1") == "http://10.0.0.1:8080/remove_worker?url=http%3A%2F%2F%5Bfe80%3A%3A1%2525eth0%5D%3A8000%26x%3D1")
    }

    /// vLLM's /metrics page (v1/metrics/loggers.py): running and waiting, per engine; other series with the same prefix are not them.
    @Test func theDrainReadsRunningAndWaiting() {
        let page = """
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{engine="0",model_name="m"} 2.0
        vllm:num_requests_running{engine="1",model_name="m"} 1.0
        vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
        vllm:num_requests_waiting_by_reason{engine="0",reason="capacity"} 7.0
        """
        #expect(GroupsRunner.requestsInFlight(page) == 6)
        #expect(GroupsRunner.requestsInFlight("vllm:num_requests_running{engine=\"0\"} 0.0\n") == 0)
        #expect(GroupsRunner.requestsInFlight("vllm:num_requests_running{} NaN\nvllm:num_requests_waiting{} -1\n") == nil)
        #expect(GroupsRunner.requestsInFlight("<html>not metrics</html>") == nil)
    }
}
