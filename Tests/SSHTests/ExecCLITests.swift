import Foundation
import Testing
import SousKit
import SousTestSupport

/// `sous exec` end to end: the built binary, an inventory file, real sshd nodes.
@Suite(.serialized) struct ExecCLITests {
    let harness: SSHDHarness
    let inventory: String
    init() throws {
        harness = try SSHDHarness(nodes: 2)
        inventory = harness.dir + "/inventory.yaml"
        var text = """
        cluster: test
        image: vllm/vllm-openai:v0.24.0
        known_hosts: \(harness.knownHosts)
        interconnect: {interface: lo}
        nodes:

        """
        for (i, addr) in harness.addresses.enumerated() {
            text += "  - {name: node\(i), host: \(addr), user: \(SSHDHarness.user), identity_file: \(harness.clientKey), interconnect_ip: \(addr)}\n"
        }
        text += "  - {name: dead, host: \(harness.addresses[0]), port: 2, user: \(SSHDHarness.user), identity_file: \(harness.clientKey), interconnect_ip: 127.0.2.254}\n"
        try text.write(toFile: inventory, atomically: true, encoding: .utf8)
    }

    func sous(_ args: [String]) throws -> (out: String, err: String, status: Int32) {
        try runSous(args, env: "SSH_AUTH_SOCK=")
    }

    @Test func everyNodeAnswers() throws {
        let r = try sous(["exec", "-i", inventory, "--nodes", "node0,node1", "--", "printf", "%s\\n", "it's $HOME"])
        #expect(r.status == 0)
        #expect(r.out == "node0: it's $HOME\nnode1: it's $HOME\n")
        #expect(r.err.hasPrefix("2/2 nodes ok in "))
    }

    @Test func oneArgumentIsAShellSnippet() throws {
        let r = try sous(["exec", "-i", inventory, "--nodes", "node1", "--", "echo a; echo b >&2; exit 3"])
        #expect(r.status == 1)
        #expect(r.out == "node1: a\n")
        #expect(r.err.contains("node1: b\n"))
        #expect(r.err.contains("0/1 nodes ok in "))
        #expect(r.err.contains("failed: node1 (exit 3)"))
    }

    @Test func anUnreachableNodeDoesNotHideTheOthers() throws {
        let r = try sous(["exec", "-i", inventory, "--json", "--", "hostname"])
        #expect(r.status == 3)
        let rows = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [[String: Any]]
        #expect(rows.map { $0["node"] as! String } == ["node0", "node1", "dead"])
        #expect(rows[0]["exit_status"] as? Int == 0)
        #expect(rows[1]["exit_status"] as? Int == 0)
        #expect((rows[2]["error"] as? String)?.contains("Connection refused") == true)
    }

    @Test func unknownNodeIsAUsageError() throws {
        let r = try sous(["exec", "-i", inventory, "--nodes", "nope", "--", "true"])
        #expect(r.status == 2)
        #expect(r.err == "error: no node named `nope` in \(inventory)\nhint: nodes: node0, node1, dead\n")
    }
}
