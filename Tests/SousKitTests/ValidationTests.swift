import Foundation
import Testing
@testable import SousKit

let goodRecipe = """
name: demo
model: org/demo-model
served_model_name: demo
source: https://huggingface.co/org/demo-model
min_vllm_version: 0.24.0
parsers:
  tool_call: qwen3_coder
  reasoning: nemotron_v3
quantization: auto
kv_cache_dtype: fp8
max_model_len: 65536
gpu_memory_utilization: 0.8
tensor_parallel_size: 2
client:
  context: 60000
  output: 4096

"""

let goodInventory = """
cluster: lab
image: vllm/vllm-openai:v0.24.0
hardware: dgx_spark_gb10
interconnect:
  interface: enp1s0f1np1
nodes:
  - name: a
    host: 10.0.0.1
    user: spark
    interconnect_ip: 192.168.100.10
  - name: b
    host: 10.0.0.2
    user: spark
    interconnect_ip: 192.168.100.11

"""

/// One error: its exact text (file:line:column: error: key: problem, then the hint).
func onlyError(_ issues: [ConfigIssue]) -> String {
    let errors = issues.filter { $0.severity == .error }
    #expect(errors.count == 1, "expected one error, got: \(issues.map(\.description))")
    return errors.first?.description ?? ""
}

@Suite struct RecipeValidationTests {
    @Test func goodRecipeHasNoIssues() {
        #expect(recipeIssues(goodRecipe).isEmpty)
    }

    @Test func unknownKeyWithDidYouMean() {
        let text = goodRecipe.replacingOccurrences(of: "max_model_len:", with: "max_modl_len:")
        let issues = recipeIssues(text).filter { $0.severity == .error }
        #expect(issues.map(\.description) == [
            "r.yaml:11:1: error: max_modl_len: unknown key\n  hint: did you mean `max_model_len`?",
            "r.yaml:1:1: error: max_model_len: missing required key",
        ])
    }

    @Test func misspelledParserNameSuggestsTheRealOne() {
        let text = goodRecipe.replacingOccurrences(of: "tool_call: qwen3_coder", with: "tool_call: qwen3_codr")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:7:14: error: parsers.tool_call: `qwen3_codr` is not a tool-call parser in any vLLM release sous knows (0.11.0–0.33.0)\n  hint: did you mean `qwen3_coder`?")
    }

    @Test func aRevisionMustBeACommitBranchOrTag() {
        #expect(recipeIssues(goodRecipe.replacingOccurrences(of: "model: org/demo-model\n", with: "model: org/demo-model\nrevision: 0123456789abcdef0123456789abcdef01234567\n")).isEmpty)
        let text = goodRecipe.replacingOccurrences(of: "model: org/demo-model\n", with: "model: org/demo-model\nrevision: ../../etc\n")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:3:11: error: revision: `../../etc` is not a commit hash, branch or tag name\n  hint: the 40-hex commit from the model's \"Files and versions\" page pins it best")
    }

    @Test func parserNewerThanMinVersion() {
        let text = goodRecipe.replacingOccurrences(of: "min_vllm_version: 0.24.0", with: "min_vllm_version: 0.11.0")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:8:14: error: parsers.reasoning: `nemotron_v3` first appears in vLLM 0.17.1, but min_vllm_version is 0.11.0\n  hint: raise min_vllm_version to 0.17.1")
    }

    @Test func clientContextMustStayBelowMaxModelLen() {
        let text = goodRecipe.replacingOccurrences(of: "context: 60000", with: "context: 65536")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:15:12: error: client.context: 65536 must stay below max_model_len (65536): agents pack prompts up to it and the server rejects them\n  hint: leave a margin for the output, e.g. 61440")
    }

    @Test func memoryFractionMustBeAFraction() {
        for bad in ["1.0", "0", "1.5", "-0.2"] {
            let text = goodRecipe.replacingOccurrences(of: "gpu_memory_utilization: 0.8", with: "gpu_memory_utilization: \(bad)")
            #expect(onlyError(recipeIssues(text)) ==
                "r.yaml:12:25: error: gpu_memory_utilization: \(bad) must be between 0 and 1 (exclusive): the fraction of GPU memory vLLM may take")
        }
    }

    @Test func explicitQuantizationNeedsAReason() {
        let text = goodRecipe.replacingOccurrences(of: "quantization: auto", with: "quantization: fp8")
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:9:15: error: quantization: an explicit method needs quantization_reason (a pre-quantized checkpoint carries its own config and vLLM detects it)\n  hint: write `quantization: auto`, or add `quantization_reason:` quoting the model card")
        let withReason = text + "quantization_reason: the card says so\n"
        #expect(recipeIssues(withReason).isEmpty)
    }

    @Test func unknownQuantizationMethod() {
        let text = goodRecipe.replacingOccurrences(of: "quantization: auto", with: "quantization: fp4\nquantization_reason: x")
        #expect(onlyError(recipeIssues(text)) == "r.yaml:9:15: error: quantization: unknown method `fp4`\n  hint: did you mean `fp8`?")
    }

    @Test func extraArgsCannotOverrideManagedFlagsOrCarryTheKey() {
        let text = goodRecipe + "extra_args:\n  api_key: abc\n  max_num_seqs: 8\n"
        #expect(onlyError(recipeIssues(text)) ==
            "r.yaml:18:3: error: extra_args.api_key: --api-key is rendered by sous from the inventory's api_key_env (the key never goes on a command line); remove it from extra_args")
    }

    @Test func gidIndexIsNeverPinned() {
        let text = goodRecipe + "env:\n  NCCL_IB_GID_INDEX: \"3\"\n"
        #expect(onlyError(recipeIssues(text)).hasPrefix("r.yaml:18:3: error: env.NCCL_IB_GID_INDEX: never pin NCCL_IB_GID_INDEX"))
    }

    @Test func wrongTypes() {
        let text = goodRecipe.replacingOccurrences(of: "tensor_parallel_size: 2", with: "tensor_parallel_size: two")
        #expect(onlyError(recipeIssues(text)) == "r.yaml:13:23: error: tensor_parallel_size: expected a whole number, found `two`")
    }

    @Test func malformedYAMLGivesPosition() {
        let issues = recipeIssues("name: demo\nparsers: [unclosed\n")
        #expect(issues.count == 1)
        #expect(issues[0].description.hasPrefix("r.yaml:3:1: error: not valid YAML:"))
    }

    @Test func unknownHardwareProfile() {
        let text = goodRecipe + "hardware:\n  dgx_spark:\n    gpu_memory_utilization: 0.7\n"
        #expect(onlyError(recipeIssues(text)) == "r.yaml:18:3: error: hardware.dgx_spark: unknown hardware profile\n  hint: known profiles: dgx_spark_gb10")
    }

    @Test func configErrorsExitTwo() {
        #expect(ConfigErrors([]).exitCode == .badInput)
        #expect(ExitStatus.badInput.rawValue == 2)
    }

    @Test func everyShippedRecipeLoadsWithoutWarnings() throws {
        for f in shippedFiles("recipes") {
            let (r, issues) = try RecipeReader.load(path: "recipes/\(f)", relativeTo: repoRoot)
            #expect(issues.isEmpty, "\(f): \(issues)")
            #expect(f == "\(r.name).yaml", "a recipe's file is named after it")
            #expect(r.clientContext < r.engine.maxModelLen)
        }
    }
}

@Suite struct InventoryValidationTests {
    @Test func goodInventory_() throws {
        let (inv, issues) = try InventoryReader.parse(goodInventory, file: "i.yaml")
        #expect(issues.isEmpty)
        #expect(inv.head.name == "a")
        #expect(inv.port == 8000 && inv.masterPort == 29501 && inv.apiKeyEnv == "VLLM_API_KEY" && inv.launcher == .mp)
        #expect(inv.vllmVersion == VLLMVersion(0, 24, 0))
    }

    @Test func unpinnedImageIsRejected() {
        let text = goodInventory.replacingOccurrences(of: "vllm/vllm-openai:v0.24.0", with: "vllm/vllm-openai:latest")
        #expect(onlyError(inventoryIssues(text)) ==
            "i.yaml:2:8: error: image: `vllm/vllm-openai:latest` is not pinned: two nodes pulling a moving tag can get different engines\n  hint: use an exact tag (vllm/vllm-openai:v0.24.0) or a digest (…@sha256:…)")
    }

    @Test func duplicateInterconnectAddress() {
        let text = goodInventory.replacingOccurrences(of: "192.168.100.11", with: "192.168.100.10")
        #expect(onlyError(inventoryIssues(text)) == "i.yaml:14:22: error: nodes[1].interconnect_ip: 192.168.100.10 is also the address of a (line 10)")
    }

    @Test func twoHeads() {
        let text = goodInventory.replacingOccurrences(of: "    interconnect_ip: 192.168.100.11", with: "    interconnect_ip: 192.168.100.11\n    role: head")
        #expect(onlyError(inventoryIssues(text)) ==
            "i.yaml:1:1: error: nodes: exactly one node must have role head (found 2)\n  hint: the first node is the head unless another says `role: head`")
    }

    @Test func unknownNodeKey() {
        let text = goodInventory.replacingOccurrences(of: "    user: spark\n    interconnect_ip: 192.168.100.11", with: "    usr: spark\n    interconnect_ip: 192.168.100.11")
        let errors = inventoryIssues(text).filter { $0.severity == .error }.map(\.description)
        #expect(errors == ["i.yaml:13:5: error: nodes[1].usr: unknown key\n  hint: did you mean `user`?",
                           "i.yaml:11:5: error: nodes[1].user: missing required key (the login user (the same on every node))"])
    }

    @Test func hostileHostIsRejected() {
        let text = goodInventory.replacingOccurrences(of: "host: 10.0.0.2", with: "host: \"x; rm -rf /\"")
        #expect(onlyError(inventoryIssues(text)) == "i.yaml:12:11: error: nodes[1].host: `x; rm -rf /` is not a host name or address\n  hint: a DNS name (letters, digits, '-' and '.') or an IPv4 or IPv6 address, without brackets, zone or port; the user goes in `user:`, the port in `port:`")
    }

    @Test func ansibleInventoryMatchesTheNativeOne() throws {
        let (native, _) = try InventoryReader.load(path: "inventory/two-sparks.yaml", relativeTo: repoRoot)
        let (ansible, issues) = try InventoryReader.load(path: "inventory/two-sparks.ansible.yaml", relativeTo: repoRoot)
        #expect(issues.isEmpty)
        #expect(ansible.nodes == native.nodes)
        #expect(ansible.image == native.image && ansible.interface == native.interface && ansible.ncclIbHca == native.ncclIbHca)
    }

    @Test func ansibleMisspelledSettingWarns() {
        let text = """
        all:
          vars:
            cluster: lab
            imag: vllm/vllm-openai:v0.24.0
            interconnect: {interface: eth1}
          hosts:
            a: {ansible_host: 10.0.0.1, ansible_user: u, interconnect_ip: 192.168.1.1}
        """
        let issues = inventoryIssues(text).map(\.description)
        #expect(issues.contains("i.yaml:4:5: warning: all.vars.imag: not a sous setting; did you mean `image`?"))
        #expect(issues.contains("i.yaml:2:3: error: all.vars.image: missing required key (a pinned tag or digest, e.g. vllm/vllm-openai:v0.24.0)"))
    }
}

/// What a security review found: inventory and recipe text that reached the nodes' shell or env file.
@Suite struct HostileInputTests {
    /// Every key of a recipe that takes text (quantization forced, so quantization_reason is read).
    static let fullRecipe = """
    name: demo
    model: org/demo-model
    revision: main
    served_model_name: demo
    source: https://huggingface.co/org/demo-model
    min_vllm_version: 0.24.0
    parsers:
      tool_call: qwen3_coder
      reasoning: nemotron_v3
    quantization: fp8
    quantization_reason: the card says so
    kv_cache_dtype: fp8
    max_model_len: 65536
    gpu_memory_utilization: 0.8
    tensor_parallel_size: 2
    client:
      context: 60000
      output: 4096
    extra_args:
      max_num_seqs: "8"
    env:
      FOO: bar
    hardware:
      dgx_spark_gb10:
        kv_cache_dtype: fp8
        env:
          BAR: baz

    """

    /// Every key of an inventory.
    static let fullInventory = """
    cluster: lab
    image: vllm/vllm-openai:v0.24.0
    vllm_version: 0.24.0
    port: 8000
    api_key_env: VLLM_API_KEY
    hf_token_env: HF_TOKEN
    launcher: mp
    hardware: dgx_spark_gb10
    interconnect:
      interface: enp1s0f1np1
      master_port: 29501
      nccl_ib_hca: rocep1s0f1
    hf_cache: /data/hf
    known_hosts: ~/.ssh/known_hosts
    shm_size: 10g
    nodes:
      - name: a
        host: 10.0.0.1
        port: 22
        user: spark
        identity_file: ~/.ssh/id_ed25519
        interconnect_ip: 192.168.100.10
        role: head
      - name: b
        host: spark-b.local
        user: spark
        interconnect_ip: 192.168.100.11

    """

    /// The value of every `key: value` line rewritten as a double-quoted YAML string holding a control character
    /// (CR, LF, NUL, tab, ESC, DEL, NEL in turn): each must be an error on that line. Before, `name: "x\n"`
    /// passed the `^…$` pattern and `source`, `identity_file` or `known_hosts` took anything.
    @Test(arguments: [("r.yaml", fullRecipe), ("i.yaml", fullInventory)])
    func everyTextValueRefusesControlCharacters(file: String, text: String) throws {
        func parse(_ t: String) -> [ConfigIssue] { file == "r.yaml" ? recipeIssues(t) : inventoryIssues(t) }
        #expect(parse(text).filter { $0.severity == .error }.isEmpty, "\(parse(text))")
        let escapes = [#"\n"#, #"\r"#, #"\0"#, #"\t"#, #"\e"#, #"\x7f"#, #"\N"#]
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var mutated = 0
        for (i, line) in lines.enumerated() {
            guard let colon = line.range(of: ": "), !line.hasSuffix(":") else { continue }
            let value = line[colon.upperBound...].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            let escape = escapes[mutated % escapes.count]
            mutated += 1
            var copy = lines
            copy[i] = String(line[..<colon.upperBound]) + "\"\(value)\(escape)x\""
            let errors = parse(copy.joined(separator: "\n")).filter { $0.severity == .error }
            #expect(errors.contains { $0.location?.line == i + 1 && $0.description.contains("\\u{") },
                    "line \(i + 1) `\(copy[i])`: \(errors.map(\.description))")
        }
        #expect(mutated >= 15)
    }

    @Test func theErrorNamesTheCharacterAndTheFix() {
        let text = goodInventory.replacingOccurrences(of: "interconnect_ip: 192.168.100.11", with: #"interconnect_ip: "1:2\nLD_PRELOAD=/tmp/x.so""#)
        #expect(onlyError(inventoryIssues(text)) == """
            i.yaml:14:22: error: nodes[1].interconnect_ip: `1:2\\u{A}LD_PRELOAD=/tmp/x.so` contains a line feed (U+000A): values must be one line of printable text
              hint: write the value on one line, without escapes such as \\n, \\t or \\0 (a `>` or `|` block ends in a line break: use `>-`)
            """)
        // A key: an env name in a recipe, a host in an Ansible inventory.
        #expect(onlyError(recipeIssues(goodRecipe + "env:\n  \"A\\nB\": x\n")).hasPrefix("r.yaml:18:3: error: env.A\\u{A}B: this key contains a line feed (U+000A)"))
        let ansible = "all:\n  vars: {cluster: lab, image: 'vllm/vllm-openai:v0.24.0', interconnect: {interface: eth1}}\n  hosts:\n    \"a\\rb\": {ansible_host: 10.0.0.1, ansible_user: u, interconnect_ip: 192.168.1.1}\n"
        #expect(onlyError(inventoryIssues(ansible)).hasPrefix("i.yaml:4:5: error: all.hosts.a\\u{D}b: this key contains a carriage return (U+000D)"))
    }

    /// Patterns match the whole value: ICU's `$` also matches before a final line break.
    @Test func patternsAreAnchoredAtBothEnds() {
        #expect("x".matchesWhole("x"))
        #expect(!"x\n".matchesWhole("x"))
        #expect(!"ab".matchesWhole("a|b"))
        #expect(!"xa\n".matchesWhole("[a-z]+"))
    }

    /// Addresses are IP literals (inet_pton) or, for `host`, RFC 1123 names. Before, any interconnect_ip with a
    /// `:` passed, and a host only had to avoid spaces and `@`.
    @Test func addressesAreParsedNotPatternMatched() {
        func errors(host: String = "10.0.0.2", ip: String = "192.168.100.11") -> [String] {
            let text = goodInventory.replacingOccurrences(of: "host: 10.0.0.2", with: "host: '\(host)'")
                .replacingOccurrences(of: "interconnect_ip: 192.168.100.11", with: "interconnect_ip: '\(ip)'")
            return inventoryIssues(text).filter { $0.severity == .error }.map(\.description)
        }
        for ip in ["10.1.2.3", "fe80::1", "2001:db8::7", "::ffff:192.168.1.2"] { #expect(errors(ip: ip).isEmpty, "\(ip)") }
        for host in ["spark-b", "spark-b.local", "SPARK-2.lab.example.com", "10.0.0.9", "2001:db8::2", "x1"] { #expect(errors(host: host).isEmpty, "\(host)") }
        for ip in [":", "1:2", "x:y", "::g", "10.0.0.256", "010.0.0.1", "10.0.0", "10.0.0.1:22", "fe80::1%eth0", "[::1]", "spark-b", " 10.0.0.1"] {
            #expect(errors(ip: ip) == ["i.yaml:14:22: error: nodes[1].interconnect_ip: `\(ip)` is not an IP address\n  hint: this node's IPv4 or IPv6 address on the interconnect, e.g. 192.168.100.10 (no zone, brackets or port)"], "\(ip)")
        }
        for host in ["-oProxyCommand=id", "a..b", "a_b", ".a", "a.", "-a", "a-", "x:22", "fe80::1%eth0", "[::1]", "10.0.0.999", "u@h",
                     String(repeating: "a", count: 64), "é.local", "$(id)"] {
            #expect(errors(host: host).count == 1 && errors(host: host).first?.hasPrefix("i.yaml:12:11: error: nodes[1].host: `\(host)` is not a host name or address") == true, "\(host)")
        }
    }

    @Test func duplicateNamesAndAddressesNameBothLines() {
        let names = goodInventory.replacingOccurrences(of: "name: b", with: "name: a")
        #expect(onlyError(inventoryIssues(names)) == "i.yaml:11:11: error: nodes[1].name: `a` is also the name of nodes[0] (line 7)")
        let hosts = goodInventory.replacingOccurrences(of: "host: 10.0.0.2", with: "host: 10.0.0.1")
        #expect(onlyError(inventoryIssues(hosts)) == "i.yaml:12:11: error: nodes[1].host: 10.0.0.1 is also the management address of a (line 8)")
        // The same machine on another port is another node; the same IPv6 address spelled two ways is not.
        #expect(inventoryIssues(hosts.replacingOccurrences(of: "    user: spark\n    interconnect_ip: 192.168.100.11", with: "    port: 2222\n    user: spark\n    interconnect_ip: 192.168.100.11")).isEmpty)
        let v6 = goodInventory.replacingOccurrences(of: "192.168.100.10", with: "'fd00::1'").replacingOccurrences(of: "192.168.100.11", with: "'fd00:0:0::01'")
        #expect(onlyError(inventoryIssues(v6)) == "i.yaml:14:22: error: nodes[1].interconnect_ip: fd00:0:0::01 is also the address of a (line 10)")
        let ansible = """
        all:
          vars: {cluster: lab, image: 'vllm/vllm-openai:v0.24.0', interconnect: {interface: eth1}}
          hosts:
            a: {ansible_host: 10.0.0.1, ansible_user: u, interconnect_ip: 192.168.1.1}
            b: {ansible_host: 10.0.0.2, ansible_user: u, interconnect_ip: 192.168.1.1}
        """
        #expect(onlyError(inventoryIssues(ansible)) == "i.yaml:5:67: error: all.hosts.b.interconnect_ip: 192.168.1.1 is also the address of a (line 4)")
    }

    /// A reference Docker would read as an option (`--volume=/:/host:v1` has a tag, so it looked pinned).
    @Test func imageReferencesFollowDockersGrammar() throws {
        func issues(_ image: String) -> [String] {
            inventoryIssues(goodInventory.replacingOccurrences(of: "vllm/vllm-openai:v0.24.0", with: "'\(image)'")).map(\.description)
        }
        for ok in ["vllm/vllm-openai:v0.24.0", "nvcr.io/nvidia/vllm:26.05-py3", "localhost:5000/team/vllm:0.24.0-cu129"] {
            #expect(issues(ok).isEmpty, "\(ok)")
        }
        for bad in ["--volume=/:/host:v1", "-v:1", "vllm/vllm-openai:v0.24.0 --privileged", "Vllm/x:1", "x:1@sha256:abc", "x/:1"] {
            #expect(issues(bad).first?.hasPrefix("i.yaml:2:8: error: image: `\(bad)` is not an image reference") == true, "\(bad): \(issues(bad))")
        }
        let digest = String(repeating: "ab", count: 32)
        #expect(issues("vllm/vllm-openai@sha256:\(digest)") == [
            "i.yaml:2:8: warning: image: cannot tell the vLLM version from `vllm/vllm-openai@sha256:\(digest)`; parser names are checked against the newest release sous knows\n  hint: add `vllm_version: X.Y.Z`"])
        // A tag beside a digest: Docker ignores the tag.
        #expect(issues("vllm/vllm-openai:latest@sha256:\(digest)").first ==
            "i.yaml:2:8: warning: image: the tag `latest` is ignored: Docker runs the image the digest names, whatever the tag says now\n  hint: drop `:latest`, or keep it only as a note (the vLLM version sous assumes is read from it; set vllm_version: to state it)")
        // --image (up, roll) is checked the same way.
        let r = try RecipeReader.parse(goodRecipe, file: "r.yaml").0
        let i = try InventoryReader.parse(goodInventory, file: "i.yaml").0
        #expect(throws: ConfigErrors.self) { try Deployment.make(recipe: r, inventory: i, image: "--privileged:v1") }
        do { _ = try Deployment.make(recipe: r, inventory: i, image: "--privileged:v1") } catch {
            #expect(error.issues.first?.description.hasPrefix("--image: error: image: `--privileged:v1` is not an image reference") == true)
        }
        #expect(try Deployment.make(recipe: r, inventory: i, image: "vllm/vllm-openai:v0.25.0").inventory.vllmVersion == VLLMVersion(0, 25, 0))
    }

    /// A 300 KB misspelled parser name took 12 s in did-you-mean (an edit distance against every known name).
    @Test func aHugeMisspelledValueIsQuick() {
        let text = goodRecipe.replacingOccurrences(of: "tool_call: qwen3_coder", with: "tool_call: " + String(repeating: "q", count: 300_000))
        let start = ContinuousClock.now
        #expect(onlyError(recipeIssues(text)).hasSuffix("is not a tool-call parser in any vLLM release sous knows (0.11.0–0.33.0)\n  hint: see `sous parsers --kind tool-call`"))
        #expect(ContinuousClock.now - start < .seconds(5), "a hang guard, not a benchmark")
        #expect(didYouMean("qwen3_codr", in: ["hermes", "qwen3_coder"]) == "qwen3_coder")
    }

    @Test func hfCacheCannotAddVolumeOptions() {
        let text = goodInventory + "hf_cache: /data:/root/.ssh\n"
        #expect(onlyError(inventoryIssues(text)).hasPrefix("i.yaml:15:11: error: hf_cache: `/data:/root/.ssh` must be an absolute path on the nodes, without ':' or ','"))
    }
}

/// Inventories big enough to hang sous: checked in linear time, nodes capped, YAML aliases walked once.
@Suite struct InventoryScaleTests {
    func elapsed(_ body: () -> Void) -> Duration {
        let start = ContinuousClock.now
        body()
        return ContinuousClock.now - start
    }

    /// 20k nodes took 44 s (the duplicate check was quadratic); now the cap refuses them before any is read.
    @Test func twentyThousandNodesAreRefusedByTheCap() {
        var text = "cluster: lab\nimage: vllm/vllm-openai:v0.24.0\ninterconnect: {interface: eth1}\nnodes:\n"
        for i in 0..<20_000 { text += "  - {name: n\(i), host: 10.0.\(i / 256 % 256).\(i % 256), user: u, interconnect_ip: 10.1.\(i / 256 % 256).\(i % 256)}\n" }
        var issues: [ConfigIssue] = []
        let took = elapsed { issues = inventoryIssues(text) }
        #expect(issues.map(\.description) == ["i.yaml:5:3: error: nodes: 20000 nodes: sous renders at most 1024\n  hint: one inventory per cluster"])
        #expect(took < .seconds(20), "a hang guard, not a benchmark: \(took)")
    }

    @Test func theCapHoldsForAnsibleHostsAndTheLimitItselfIsFine() throws {
        func ansible(_ n: Int) -> String {
            "all:\n  vars: {cluster: lab, image: 'vllm/vllm-openai:v0.24.0', interconnect: {interface: eth1}}\n  hosts:\n"
                + (0..<n).map { "    n\($0): {ansible_host: 10.0.\($0 / 256).\($0 % 256), ansible_user: u, interconnect_ip: 10.1.\($0 / 256).\($0 % 256)}\n" }.joined()
        }
        #expect(onlyError(inventoryIssues(ansible(1025))).hasPrefix("i.yaml:1028:5: error: all.hosts.n1024: more than 1024 hosts"))
        let (inv, _) = try InventoryReader.parse(ansible(InventoryReader.maxNodes), file: "i.yaml")
        #expect(inv.nodes.count == 1024 && Set(inv.nodes.map(\.interconnectIP)).count == 1024)
    }

    /// 1.2 KB: each group's children are two aliases of the group before, 22 levels deep, so 2^22 paths lead to
    /// the one host. The walk took 211 s; each group is now walked once.
    @Test func anAliasBombIsWalkedOncePerGroup() throws {
        var text = "all:\n  vars: {cluster: lab, image: 'vllm/vllm-openai:v0.24.0', interconnect: {interface: eth1}}\n  children:\n"
        text += "    g0: &g0\n      hosts:\n        a: {ansible_host: 10.0.0.1, ansible_user: u, interconnect_ip: 192.168.1.1}\n"
        for i in 1...22 { text += "    g\(i): &g\(i)\n      children: {x: *g\(i - 1), y: *g\(i - 1)}\n" }
        #expect(text.utf8.count < 1300)
        var result: (Inventory, [ConfigIssue])?
        let took = elapsed { result = try? InventoryReader.parse(text, file: "i.yaml") }
        let (inv, issues) = try #require(result)
        #expect(issues.isEmpty && inv.nodes.map(\.name) == ["a"] && inv.nodes[0].host == "10.0.0.1")
        #expect(took < .seconds(10), "a hang guard, not a benchmark: \(took)")
    }

    /// A group listed under two parents (an alias, or its hosts repeated) still gives each host once.
    @Test func aSharedGroupGivesItsHostsOnce() throws {
        let text = """
        all:
          vars: {cluster: lab, image: 'vllm/vllm-openai:v0.24.0', interconnect: {interface: eth1}}
          children:
            gpus: &gpus
              hosts:
                a: {ansible_host: 10.0.0.1, ansible_user: u, interconnect_ip: 192.168.1.1}
                b: {ansible_host: 10.0.0.2, ansible_user: u, interconnect_ip: 192.168.1.2}
            rack1: {children: {gpus: *gpus}}
            rack2:
              hosts:
                b: {ansible_host: 10.0.0.2, ansible_user: u, interconnect_ip: 192.168.1.2}
        """
        let (inv, issues) = try InventoryReader.parse(text, file: "i.yaml")
        #expect(issues.isEmpty && inv.nodes.map(\.name) == ["a", "b"] && inv.head.name == "a")
    }
}

@Suite struct DeploymentValidationTests {
    func pair(_ recipe: String, _ inventory: String) -> [ConfigIssue] {
        do {
            let r = try RecipeReader.parse(recipe, file: "r.yaml").0
            let i = try InventoryReader.parse(inventory, file: "i.yaml").0
            return try Deployment.make(recipe: r, inventory: i).warnings
        } catch { return error.issues }
    }

    @Test func tensorParallelMustMatchNodes() {
        let inv = goodInventory + "  - name: c\n    host: 10.0.0.3\n    user: spark\n    interconnect_ip: 192.168.100.12\n"
        #expect(onlyError(pair(goodRecipe, inv)) ==
            "r.yaml:13:23: error: tensor_parallel_size: 2 does not match the inventory: 3 nodes × 1 GPU = 3 (i.yaml)\n  hint: use an inventory with 2 nodes, or a recipe with tensor_parallel_size 3")
    }

    @Test func parserMissingFromTheImagesVLLM() {
        let inv = goodInventory.replacingOccurrences(of: "v0.24.0", with: "v0.11.0")
        let recipe = goodRecipe.replacingOccurrences(of: "min_vllm_version: 0.24.0", with: "min_vllm_version: 0.17.1")
        let errors = pair(recipe, inv).filter { $0.severity == .error }.map(\.description)
        #expect(errors.contains("r.yaml:5:19: error: min_vllm_version: the recipe needs vLLM 0.17.1, but vllm/vllm-openai:v0.11.0 runs 0.11.0\n  hint: bump `image` in i.yaml"))
        #expect(errors.contains("r.yaml:8:14: error: parsers.reasoning: `nemotron_v3` is not a registered reasoning parser in vLLM 0.11.0 (vllm/vllm-openai:v0.11.0); vLLM would refuse to start (before loading any weight)\n  hint: it first appears in vLLM 0.17.1"))
        // The launcher line, or the image's when the launcher is the default.
        #expect(errors.contains("i.yaml:2:8: error: launcher: vLLM 0.11.0 cannot run the mp launcher across nodes (it arrived in 0.11.1)\n  hint: set `launcher: ray`, or use a newer image"))
    }

    @Test func memoryWarningOnUnifiedMemory() {
        let recipe = goodRecipe.replacingOccurrences(of: "gpu_memory_utilization: 0.8", with: "gpu_memory_utilization: 0.9")
        let issues = pair(recipe, goodInventory)
        #expect(issues.map(\.severity) == [.warning])
        #expect(issues[0].description.hasPrefix("r.yaml:12:25: warning: gpu_memory_utilization: 0.9 is above 0.85 on dgx_spark_gb10"))
    }

    @Test func oldImageWarnsAboutFingerprint() {
        let inv = goodInventory.replacingOccurrences(of: "vllm/vllm-openai:v0.24.0", with: "nvcr.io/nvidia/vllm:26.05-py3")
        let recipe = goodRecipe.replacingOccurrences(of: "min_vllm_version: 0.24.0", with: "min_vllm_version: 0.17.1")
        let issues = pair(recipe, inv)
        #expect(issues.map(\.severity) == [.warning])
        #expect(issues[0].problem.hasPrefix("vLLM 0.20.1 does not report system_fingerprint"))
    }
}

@Suite struct CatalogTests {
    @Test func aliasesDependOnVersion() {
        let c = ParserCatalog.builtin
        #expect(c.sameParser("qwen3_coder", "qwen3_xml", kind: .toolCall, version: VLLMVersion(0, 24, 0)))
        #expect(!c.sameParser("qwen3_coder", "qwen3_xml", kind: .toolCall, version: VLLMVersion(0, 21, 0)))
        #expect(c.firstRelease(with: "nemotron_v3", kind: .reasoning) == VLLMVersion(0, 17, 1))
    }

    @Test func versionFromImage() {
        #expect(VLLMVersion.fromImage("vllm/vllm-openai:v0.24.0-ubuntu2404") == VLLMVersion(0, 24, 0))
        #expect(VLLMVersion.fromImage("nvcr.io/nvidia/vllm:26.05-py3") == VLLMVersion(0, 20, 1))
        #expect(VLLMVersion.fromImage("registry:5000/vllm@sha256:abc") == nil)
        #expect(VLLMVersion("0.20.1rc1.dev135+ge786a2dfc") == VLLMVersion(0, 20, 1))
    }

    /// The generated Swift table must match data/vllm-parsers-by-version.json (run scripts/gen-parser-catalog.py).
    @Test func generatedCatalogMatchesTheData() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: repoPath("data/vllm-parsers-by-version.json")))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: [String: Any]]
        #expect(json.count == ParserCatalog.builtin.releases.count)
        for release in ParserCatalog.builtin.releases {
            let entry = try #require(json[release.version.description])
            #expect(entry["tool_call_parsers"] as? [String: String] == release.toolCallParsers)
            #expect(entry["reasoning_parsers"] as? [String: String] == release.reasoningParsers)
            #expect(entry["system_fingerprint"] as? Bool == release.systemFingerprint)
        }
    }
}
