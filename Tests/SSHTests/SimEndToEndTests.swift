import Foundation
import Testing
import SousKit
import SousTestSupport

/// End to end on the simulated pair, over real SSH: `sous sim up`, then the built `sous` binary as a person runs it.
/// One simulation at a time (the sim's namespaces, bridge and range are fixed), so the suite is serialized.
@Suite(.serialized) final class SimEndToEndTests {
    let dir: String
    let inventory: String
    let key = "sk-sim-\(UUID().uuidString)"

    init() throws {
        dir = NSTemporaryDirectory() + "sous-sim-\(UUID().uuidString.prefix(8))"
        inventory = dir + "/sim.yaml"
        let r = try Self.sous(["sim", "up", "--dir", dir, "--load-seconds", "0.4"], key: nil)
        guard r.status == 0 else { throw HarnessError("sim up failed: \(r.err)") }
    }

    deinit {
        _ = try? Self.sous(["sim", "down", "--dir", dir], key: nil)
        try? FileManager.default.removeItem(atPath: dir)
    }

    static func sous(_ args: [String], key: String?) throws -> (out: String, err: String, status: Int32) {
        try runSous(args, env: "SSH_AUTH_SOCK= XDG_STATE_HOME=\(NSTemporaryDirectory())sous-e2e-state VLLM_API_KEY=\(key ?? "")")
    }

    func sous(_ args: [String]) throws -> (out: String, err: String, status: Int32) { try Self.sous(args, key: key) }
    func up(_ extra: [String] = []) throws -> (out: String, err: String, status: Int32) {
        try sous(["up", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory] + extra)
    }
    func exec(_ node: String, _ script: String) throws -> String {
        try sous(["exec", "-i", inventory, "--nodes", node, "--", script]).out
    }
    func fault(_ node: String, _ kind: String, off: Bool = false) throws {
        let r = try sous(["sim", "fault", "--dir", dir, node, kind] + (off ? ["--off"] : []))
        #expect(r.status == 0, "\(r.err)")
    }

    @Test func healthyUpThenASecondUpChangesNothing() throws {
        let first = try up(["--json"])
        #expect(first.status == 0, "\(first.err)")
        let result = try JSONSerialization.jsonObject(with: Data(first.out.utf8)) as! [String: Any]
        #expect((result["fingerprint"] as? String)?.contains("-tp2-") == true)
        let checks = result["checks"] as! [[String: Any]]
        #expect(checks.count == 10 && checks.allSatisfy { $0["passed"] as? Bool == true }, "\(checks)")
        #expect(result["restarted"] as? Bool == true)
        // How long the start took, and the first completion's first token; the journal keeps both.
        #expect((result["ready_s"] as? Double).map { $0 > 0 } == true && (result["first_token_s"] as? Double).map { $0 > 0 } == true, "\(result)")
        #expect(try exec("spark-1", "tail -n 1 /var/lib/sous/journal.jsonl").contains("\"first_token_s\":"))
        #expect(try exec("spark-2", "grep VLLM_ENGINE_READY_TIMEOUT_S /var/lib/sous/vllm.env") == "spark-2: VLLM_ENGINE_READY_TIMEOUT_S=1860\n")
        // While the engine loads: how long, and the head's latest log line (progress goes to stderr with --json).
        #expect(first.err.contains("        waiting 1s of 30m00s for /health; spark-1: INFO "), "\(first.err)")
        let idBefore = try exec("spark-1", "docker inspect --format '{{.Id}}' sous-vllm")

        let second = try up()
        #expect(second.status == 0, "\(second.err)")
        #expect(second.out.hasSuffix("4/4 agent checks, 4/4 streamed and forced-call checks, 401 without the key, a 2-turn agent session, nothing restarted\n"))
        #expect(second.out.contains("10/10 checks, a 2-turn session with 4 tools"), "\(second.out)")
        for step in ["env", "start", "pull"] { #expect(second.err.contains("\nok      \(step)") || second.out.contains("ok      \(step)")) }
        #expect(try exec("spark-1", "docker inspect --format '{{.Id}}' sous-vllm") == idBefore)
        #expect(try exec("spark-1", "wc -l < /var/lib/sous/journal.jsonl") == "spark-1: 2\n")
        #expect(try exec("spark-1", "stat -c %a /var/lib/sous/vllm.env") == "spark-1: 600\n")
        #expect(try exec("spark-2", "grep -c VLLM_API_KEY /var/lib/sous/vllm.env || true") == "spark-2: 0\n")
    }

    /// Before vLLM 0.21 there is no system_fingerprint: tp comes from every rank's docker inspect and the head's startup log.
    @Test func anOldVLLMIsVerifiedWithoutAFingerprint() throws {
        let r = try sous(["up", "--recipe", repoPath("recipes/qwen3-coder-30b-a3b-fp8.yaml"), "--inventory", inventory, "--image", "vllm/vllm-openai:v0.15.0"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("9/9 checks, a 2-turn session with 4 tools; vLLM 0.15.0 has no system_fingerprint: tp verified from docker inspect on every node and the head's startup log"), "\(r.out)")
        #expect(r.out.contains("no fingerprint (vLLM < 0.21; tp checked with docker inspect and the startup log), 4/4 agent checks, 4/4 streamed and forced-call checks, 401 without the key, a 2-turn agent session, ready "), "\(r.out)")
        #expect(r.out.hasSuffix(" s\n") && r.out.contains(" after the start, first token "), "a start says how long it took and the first token: \(r.out)")
    }

    /// The gate ends with a small agent session; --session-turns sets its size. Markup that leaks into content only
    /// from turn 7 on (late-markup) passes the default two turns and fails seven, naming the turn.
    @Test func theGatesSessionNamesTheTurnThatFails() throws {
        #expect(try up().status == 0)
        try fault("spark-1", "late-markup")
        #expect(try up().status == 0, "two turns never reach turn 7")
        let seven = try up(["--session-turns", "7"])
        #expect(seven.status == 1)
        #expect(seven.err.contains("verify: session turn 7 failed on spark-1"), "\(seven.err)")
        let none = try up(["--session-turns", "0"])
        #expect(none.status == 0 && none.out.contains("  10/10 checks\n") && !none.out.contains("agent session"), "\(none.out)")
    }

    @Test func hardenIsVerifiedAndIdempotent() throws {
        let drift = try sous(["harden", "-i", inventory, "--check"])
        #expect(drift.status == 1)
        #expect(drift.out.contains("DRIFT   spark-1    sshd oom  running sshd at 0, drop-in missing"))
        let first = try sous(["harden", "-i", inventory])
        #expect(first.status == 0, "\(first.err)")
        #expect(first.out.contains("changed spark-2    sshd oom  wrote /etc/systemd/system/ssh.service.d/sous-oom.conf, restarted ssh; running sshd at -1000"))
        let again = try sous(["harden", "-i", inventory])
        #expect(again.status == 0)
        #expect(again.out.split(separator: "\n").allSatisfy { $0.hasPrefix("ok ") }, "\(again.out)")
        #expect(try sous(["harden", "-i", inventory, "--check"]).status == 0)
        for node in ["spark-1", "spark-2"] {
            #expect(try exec(node, "cat /proc/$(systemctl show -p MainPID --value ssh)/oom_score_adj; systemctl is-active earlyoom") == "\(node): -1000\n\(node): active\n")
        }
        // The earlyoom running in each node's namespace is the real binary with sous's patterns.
        let ns = try sh("for p in $(ip netns pids sous-spark-2); do tr '\\0' ' ' < /proc/$p/cmdline; echo; done | grep '^/usr/bin/earlyoom'")
        #expect(ns.contains("--avoid (^|/)(sshd|systemd|dockerd|containerd)$ --prefer (^|/)(vllm|VLLM.*|python[0-9.]*|ray|raylet)$"))
    }

    @Test func theKeyNeverLeaks() throws {
        let r = try up()
        #expect(r.status == 0, "\(r.err)")
        #expect(!r.out.contains(key) && !r.err.contains(key))
        // Every process on this machine, the nodes' sshd sessions and engines included.
        // The pattern comes from a file, so no command line of ours carries it either.
        let pattern = NSTemporaryDirectory() + "sous-key-pattern"
        try key.write(toFile: pattern, atomically: true, encoding: .utf8)
        defer { unlink(pattern) }
        let (_, hits) = try shStatus("grep -l -a -F -f \(pattern) /proc/[0-9]*/cmdline 2>/dev/null || true")
        #expect(hits.trimmingCharacters(in: .whitespacesAndNewlines) == "")
        let journal = try exec("spark-1", "cat /var/lib/sous/journal.jsonl")
        #expect(!journal.contains(key))
    }

    @Test func theSeedsFourChecksAsCurlAndJq() throws {
        #expect(try up().status == 0)
        let base = "http://10.213.0.11:8000"
        let tool = #"{"model": "nvidia/nemotron-3-super", "temperature": 1.0, "top_p": 0.95, "max_tokens": 1024, "tool_choice": "auto", "messages": [{"role": "user", "content": "What is the current weather in Zurich? Call the get_weather tool to find out."}], "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city.", "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}]}"#
        let script = """
        set -u
        K='\(key)'; B=\(base)
        curl -s $B/v1/models -H "Authorization: Bearer $K" | jq -r '.data[].id'
        curl -s -o /dev/null -w '%{http_code}\\n' $B/v1/models
        R=$(curl -s $B/v1/chat/completions -H "Authorization: Bearer $K" -H 'Content-Type: application/json' -d '\(tool)')
        echo "$R" | jq -e '.choices[0] as $c | ($c.finish_reason == "tool_calls") and ($c.message.tool_calls | type == "array") and ($c.message.tool_calls[0].function.name == "get_weather") and ($c.message.tool_calls[0].function.arguments | fromjson | type == "object")' >/dev/null && echo "PASS: tool_calls well-formed" || echo "FAIL"
        ID=$(echo "$R" | jq -r '.choices[0].message.tool_calls[0].id')
        curl -s $B/v1/chat/completions -H "Authorization: Bearer $K" -H 'Content-Type: application/json' -d '{"model": "nvidia/nemotron-3-super", "max_tokens": 1024, "messages": [{"role": "user", "content": "What is the current weather in Zurich? Call the get_weather tool."}, {"role": "assistant", "content": null, "tool_calls": [{"id": "'$ID'", "type": "function", "function": {"name": "get_weather", "arguments": "{\\"location\\": \\"Zurich\\"}"}}]}, {"role": "tool", "tool_call_id": "'$ID'", "content": "{\\"location\\": \\"Zurich\\", \\"temp_c\\": 12, \\"condition\\": \\"cloudy\\"}"}]}' | jq -r '.choices[0] | "\\(.finish_reason) \\(.message.content)"'
        echo "$R" | jq -r .system_fingerprint
        """
        let out = try sh(script)
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines[0] == "nvidia/nemotron-3-super")
        #expect(lines[1] == "401")
        #expect(lines[2] == "PASS: tool_calls well-formed")
        #expect(lines[3] == "stop It is 12°C and cloudy in Zurich right now.")
        #expect(lines[4].hasPrefix("vllm-0.24.0-tp2-"))
    }

    /// Each fault fails `up` at the layer where it shows on a real server, with that layer's diagnosis.
    @Test(arguments: [
        ("wrong-parser", "spark-1", false, "error: verify: tool call failed on spark-1", "the reasoning and tool parsers are not the model's"),
        ("malformed-arguments", "spark-1", false, "error: verify: JSON arguments failed on spark-1", "parser/model mismatch"),
        ("engine-dead", "spark-1", false, "error: wait: /health failed on spark-1", "no 200"),
        ("crash-on-start", "spark-2", true, "error: wait: container running failed on spark-2", "simulated crash-on-start"),
        ("worker-never-joins", "spark-2", true, "error: wait: /health failed on spark-1", "never joins"),
        ("wedge", "spark-1", false, "error: verify: tool call failed on spark-1", "wedged engine"),
        ("slow-load", "spark-1", true, "error: wait: /health failed on spark-1", "no 200"),
    ])
    func faultsFailAtTheirLayer(kind: String, node: String, restart: Bool, expected: String, diagnosis: String) throws {
        #expect(try up().status == 0)
        try fault(node, kind)
        if restart { _ = try exec("spark-1,spark-2", "docker rm -f sous-vllm") }
        let r = try up(["--timeout", "3s", "--check-timeout", "3"])
        #expect(r.status == 1, "\(r.out)\n\(r.err)")
        #expect(r.err.contains(expected), "\(r.err)")
        #expect(r.err.contains(diagnosis), "\(r.err)")
        #expect(r.err.contains("hint: "))
    }

    @Test func anEngineThatCrashesLaterFailsValidation() throws {
        #expect(try up().status == 0)
        try fault("spark-1", "crash-later")
        _ = try exec("spark-1,spark-2", "docker rm -f sous-vllm")
        #expect(try up().status == 0, "it serves for a while")
        usleep(3_500_000)
        let r = try sous(["validate", "--base-url", "http://10.213.0.11:8000/v1", "--model", "nvidia/nemotron-3-super", "--timeout", "3"])
        #expect(r.status == 1)
        #expect(r.out.hasPrefix("FAIL  model list: GET http://10.213.0.11:8000/v1/models: connection refused"), "\(r.out)")
        // The rank's restart policy starts it again (Docker counts it); the crash is in its log.
        #expect(try exec("spark-1", "docker inspect --format '{{.RestartCount}}' sous-vllm") != "spark-1: 0\n")
        #expect(try exec("spark-1", "docker logs sous-vllm 2>&1").contains("simulated crash-later"))
    }

    func roll(_ image: String, _ extra: [String] = []) throws -> (out: String, err: String, status: Int32) {
        try sous(["roll", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory, "--image", image,
                  "--timeout", "4s", "--check-timeout", "3"] + extra)
    }

    @Test func aGoodRollIsVerifiedAndShowsTheFingerprintDiff() throws {
        #expect(try up().status == 0)
        let r = try roll("vllm/vllm-openai:v0.28.0")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("fingerprint: vllm-0.24.0-tp2-"))
        #expect(r.out.contains(" → vllm-0.28.0-tp2-"))
        #expect(r.out.contains("outcome: verified (vllm/vllm-openai:v0.24.0 → vllm/vllm-openai:v0.28.0)"))
        #expect(r.out.contains("pre-pull") && r.out.contains("old engine still serving"))
        let history = try sous(["history", "-i", inventory]).out
        #expect(history.contains("roll   vllm/vllm-openai:v0.24.0 → vllm/vllm-openai:v0.28.0  verified"))
        let entries = try JSONSerialization.jsonObject(with: Data(try sous(["history", "-i", inventory, "--json"]).out.utf8)) as? [[String: Any]] ?? []
        #expect(entries.map { $0["n"] as? Int } == [1, 2] && entries.last?["event"] as? String == "roll" && entries.last?["outcome"] as? String == "verified", "\(entries)")
        // And back with `rollback`, to the image before the current one.
        let back = try sous(["rollback", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory, "--timeout", "4s"])
        #expect(back.status == 0, "\(back.err)")
        #expect(back.out.contains("outcome: verified (vllm/vllm-openai:v0.28.0 → vllm/vllm-openai:v0.24.0)"))
    }

    @Test(arguments: ["crash-on-start", "worker-never-joins", "wrong-parser"])
    func aBadImageRollsBackAutomatically(fault: String) throws {
        #expect(try up().status == 0)
        let bad = "vllm/vllm-openai:v0.28.0-sim-\(fault)"
        let r = try roll(bad)
        #expect(r.status == 1, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("outcome: rolled back (vllm/vllm-openai:v0.24.0 → \(bad))"))
        #expect(r.out.contains("fingerprint: vllm-0.24.0-tp2-"))
        #expect(r.out.contains(" → vllm-0.24.0-tp2-"), "the old image is verified again")
        let journal = try exec("spark-1", "tail -n 1 /var/lib/sous/journal.jsonl")
        #expect(journal.contains("\"outcome\":\"rolled back\""))
        #expect(try exec("spark-1", "docker inspect --format '{{.Config.Image}}' sous-vllm") == "spark-1: vllm/vllm-openai:v0.24.0\n")
        #expect(try exec("spark-1", "ls /var/lib/sous/lock 2>&1 | grep -c 'No such' || true") == "spark-1: 1\n", "the lock is released")
    }

    @Test func aSecondRollIsRefusedByTheLock() throws {
        #expect(try up().status == 0)
        let first = NSTemporaryDirectory() + "sous-roll-\(UUID().uuidString)"
        let quoted = try ([sousBinary, "roll", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory,
                           "--image", "vllm/vllm-openai:v0.28.0"]).map { try ShellQuote.quote($0) }.joined(separator: " ")
        try sh("SSH_AUTH_SOCK= VLLM_API_KEY=\(key) \(quoted) > \(first).out 2>&1 & echo $! > \(first).pid")
        usleep(300_000)
        let second = try roll("vllm/vllm-openai:v0.31.0")
        #expect(second.status == 1)
        #expect(second.err.contains("error: the cluster is locked by "), "\(second.err)")
        #expect(second.err.contains("roll vllm/vllm-openai:v0.24.0 → vllm/vllm-openai:v0.28.0"))
        #expect(second.err.contains("--force-unlock"))
        try sh("while kill -0 $(cat \(first).pid) 2>/dev/null; do sleep 0.1; done")
        #expect(try String(contentsOfFile: first + ".out", encoding: .utf8).contains("outcome: verified"))
    }

    /// Runs sous in the background, sends SIGTERM (what Ctrl-C does) once its output shows `marker`, and returns
    /// its exit status and output.
    func interrupt(_ args: [String], once marker: String, env: String = "") throws -> (Int32, String) {
        let out = NSTemporaryDirectory() + "sous-int-\(UUID().uuidString).out"
        defer { unlink(out) }
        let quoted = try ([sousBinary] + args).map { try ShellQuote.quote($0) }.joined(separator: " ")
        let (status, _) = try shStatus("""
            SSH_AUTH_SOCK= VLLM_API_KEY=\(key) XDG_STATE_HOME=\(NSTemporaryDirectory())sous-e2e-state \(env) \(quoted) > \(out) 2>&1 & p=$!
            for i in $(seq 400); do grep -qF \(try ShellQuote.quote(marker)) \(out) && break; sleep 0.05; done
            kill -TERM $p; wait $p
            """)
        return (status, try String(contentsOfFile: out, encoding: .utf8))
    }

    /// SIGTERM (as Ctrl-C) while the new image loads: the roll goes back to the old image, releases the lock, exits 130.
    @Test func anInterruptedRollGoesBackAndUnlocks() throws {
        #expect(try up().status == 0)
        // The -sim-slow-load image loads for 4 s: the signal goes in once it has started.
        let (status, text) = try interrupt(["roll", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory,
                                            "--image", "vllm/vllm-openai:v0.28.0-sim-slow-load"], once: "changed start")
        #expect(status == 130, "\(text)")
        #expect(text.contains("interrupting: stopping at the next safe point"))
        #expect(text.contains("changed rollback          0.00 s  to vllm/vllm-openai:v0.24.0: interrupted"), "\(text)")
        #expect(text.contains("outcome: rolled back") && text.contains("cause: interrupted while vllm/vllm-openai:v0.28.0-sim-slow-load started"))
        #expect(try exec("spark-1", "docker inspect --format '{{.Config.Image}}' sous-vllm") == "spark-1: vllm/vllm-openai:v0.24.0\n")
        // The lock is gone: the next roll goes ahead.
        #expect(try roll("vllm/vllm-openai:v0.28.0").status == 0)
    }

    @Test func theWorkersSshdKilledMidRollIsAClearFailure() throws {
        let first = try up()
        #expect(first.status == 0, "\(first.out)\n\(first.err)")
        // A slow-loading new image keeps the roll in its wait step while the worker's sshd dies.
        let out = NSTemporaryDirectory() + "sous-roll-\(UUID().uuidString)"
        let quoted = try ([sousBinary, "roll", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory,
                           "--image", "vllm/vllm-openai:v0.28.0-sim-slow-load", "--timeout", "20s"]).map { try ShellQuote.quote($0) }.joined(separator: " ")
        try sh("{ SSH_AUTH_SOCK= VLLM_API_KEY=\(key) \(quoted) > \(out).out 2> \(out).err; echo $? > \(out).rc; } &")
        usleep(1_500_000)
        try fault("spark-2", "sshd-down")
        try sh("while [ ! -s \(out).rc ]; do sleep 0.1; done")
        let rc = try String(contentsOfFile: out + ".rc", encoding: .utf8)
        let text = try String(contentsOfFile: out + ".out", encoding: .utf8) + (try String(contentsOfFile: out + ".err", encoding: .utf8))
        #expect(rc == "1\n", "\(text)")
        #expect(text.contains("outcome: rollback failed"), "\(text)")
        #expect(text.contains("on spark-2"), "\(text)")
        #expect(text.contains("rollback: preflight failed on spark-1: cannot reach the interconnect address 10.213.0.12"), "\(text)")
    }

    @Test func auditFindsDriftIntroducedByHand() throws {
        #expect(try up().status == 0)
        let clean = try sous(["audit", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory])
        #expect(clean.status == 0, "\(clean.out)")
        #expect(clean.out.hasSuffix("clean: every node runs what nemotron-3-super-nvfp4 renders\n"))
        // By hand on the worker: a different max length, a forced quantization against an NVFP4 checkpoint, a pinned GID index.
        let json = try sous(["render", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory, "--node", "spark-2", "--format", "json"]).out
        let node = ((try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any])["nodes"] as! [[String: Any]])[0]
        var argv = node["docker_argv"] as! [String]
        argv[argv.firstIndex(of: "262144")!] = "131072"
        argv.insert(contentsOf: ["-e", "NCCL_IB_GID_INDEX=3"], at: 5)
        argv += ["--quantization", "fp8"]
        _ = try exec("spark-2", "docker rm -f sous-vllm >/dev/null && " + (try ShellQuote.join(argv)))
        let r = try sous(["audit", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory])
        #expect(r.status == 1)
        #expect(r.out.contains("  DRIFT  --max-model-len 131072, the recipe renders 262144"))
        #expect(r.out.contains("  DRIFT  --quantization fp8 is forced, but the checkpoint says modelopt_mixed"))
        #expect(r.out.contains("  DRIFT  env NCCL_IB_GID_INDEX is pinned"))
        #expect(r.out.hasSuffix("drift on spark-2\n"))
        #expect(!r.out.contains(key))
        // A worker's checkpoint that no longer matches the head's.
        _ = try exec("spark-2", "truncate -s -10 \"$(readlink -f /home/sous/.cache/huggingface/hub/models--nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4/snapshots/*/model-00001-of-00003.safetensors)\"")
        let ckpt = try sous(["audit", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory])
        #expect(ckpt.out.contains("  DRIFT  checkpoint incomplete: model-00001-of-00003.safetensors is 213978 bytes, its header says 213988"), "\(ckpt.out)")
    }

    @Test func openCodeConfigKeepsTheUsersSettings() throws {
        #expect(try up().status == 0)
        let file = dir + "/opencode.json"
        try #"{"theme": "dark", "provider": {"other": {"npm": "x"}}, "model": "other/m"}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try sous(["client", "opencode", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory, "--write", file, "--provider", "pulsar"])
        #expect(r.status == 0, "\(r.err)")
        let c = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as! [String: Any]
        #expect(c["theme"] as? String == "dark")
        #expect(c["model"] as? String == "pulsar/nvidia/nemotron-3-super")
        let providers = c["provider"] as! [String: Any]
        #expect(providers["other"] != nil)
        let p = providers["pulsar"] as! [String: Any]
        #expect(p["npm"] as? String == "@ai-sdk/openai-compatible")
        #expect((p["options"] as! [String: Any])["baseURL"] as? String == "http://10.213.0.11:8000/v1")
        #expect((p["options"] as! [String: Any])["apiKey"] as? String == "{env:VLLM_API_KEY}")
        let m = (p["models"] as! [String: Any])["nvidia/nemotron-3-super"] as! [String: Any]
        let limit = m["limit"] as! [String: Int]
        #expect(limit["context"]! < 262144 && limit["output"] == 32768)
        #expect((m["interleaved"] as? [String: String])?["field"] == "reasoning")
        #expect(!(try String(contentsOfFile: file, encoding: .utf8)).contains(key))
    }

    @Test func aRotatedKeyLocksOutTheOldOne() throws {
        #expect(try up().status == 0)
        let keyFile = dir + "/new.key"
        let r = try sous(["rotate-key", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory, "--key-file", keyFile])
        #expect(r.status == 0, "\(r.err)")
        #expect(!r.out.contains(key) && !r.err.contains(key))
        let newKey = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(newKey.count == 64 && !r.out.contains(newKey) && !r.err.contains(newKey))
        #expect(try sh("stat -c %a \(keyFile)") == "600\n")
        #expect(try sh("curl -s -o /dev/null -w '%{http_code}' http://10.213.0.11:8000/v1/models -H 'Authorization: Bearer \(key)'") == "401")
        #expect(try sh("curl -s -o /dev/null -w '%{http_code}' http://10.213.0.11:8000/v1/models -H \"Authorization: Bearer $(cat \(keyFile))\"") == "200")
    }

    @Test func theWatchdogTriggersOnceOnAWedgeAndNeverWhenHealthy() throws {
        #expect(try up().status == 0)
        let marker = dir + "/triggers"
        let args = ["watch", "-i", inventory, "--model", "nvidia/nemotron-3-super", "--interval", "0.2", "--failures", "3",
                    "--probe-timeout", "2", "--on-failure", "echo triggered >> \(marker)", "--for", "3"]
        let healthy = try sous(args)
        #expect(healthy.out.hasSuffix("watch ended: 0 recovery runs\n"))
        // --json: one JSON object a line, the last one the end.
        let lines = try sous(args.dropLast(2) + ["--for", "1", "--json"]).out.split(separator: "\n")
        #expect(lines.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }?["event"] as? String == "end", "\(lines)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        try fault("spark-1", "wedge")
        // Three probes of 2 s each, 0.2 s apart, then the trigger: about 7 s.
        let wedged = try sous(args.dropLast(2) + ["--for", "9"])
        #expect(wedged.out.contains("fail 3/3: no completion within 2.0 seconds (/health is 200: a wedged engine)"), "\(wedged.out)")
        #expect(wedged.out.hasSuffix("watch ended: 1 recovery run\n"))
        #expect(try String(contentsOfFile: marker, encoding: .utf8) == "triggered\n")
    }

    @Test func statusAndDoctor() throws {
        #expect(try up().status == 0)
        let st = try sous(["status", "-i", inventory, "--model", "nvidia/nemotron-3-super"])
        #expect(st.status == 0, "\(st.err)")
        #expect(st.out.contains("spark-2  worker  yes        running    vllm/vllm-openai:v0.24.0  1          -1000     active"))
        #expect(st.out.contains("/health 200, fingerprint vllm-0.24.0-tp2-"))
        let clean = try sous(["doctor", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory])
        #expect(clean.status == 0)
        #expect(clean.out.contains("no gotcha found") == false && clean.out.contains("note: `/` in the model id rejected"))
        let report = try JSONSerialization.jsonObject(with: Data(try sous(["doctor", "-r", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "-i", inventory, "--json"]).out.utf8)) as? [String: Any]
        #expect((report?["checks"] as? [[String: Any]])?.allSatisfy { $0["passed"] as? Bool == true } == true)
        #expect((report?["found"] as? [[String: Any]])?.map { $0["gotcha"] as? String } == ["slashInModelID"], "\(String(describing: report))")
        for (kind, row) in [("malformed-arguments", "FOUND: arguments not parseable JSON"), ("wrong-parser", "FOUND: reasoning text inside tool arguments or content")] {
            try fault("spark-1", kind)
            let r = try sous(["doctor", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory])
            #expect(r.status == 1)
            #expect(r.out.contains(row), "\(r.out)")
            try fault("spark-1", kind, off: true)
        }
    }

    /// The Nemotron checkpoint from the simulated hub on both nodes, its index claiming `totalGiB` of weights.
    func placeCheckpoint(totalGiB: Int) throws {
        #expect(try model(["--fetch"]).status == 0)
        let index = "/home/sous/.cache/huggingface/hub/models--nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4/snapshots/*/model.safetensors.index.json"
        _ = try exec("spark-1,spark-2", "sed -i -E 's/\"total_size\" *: *[0-9]+/\"total_size\": \(totalGiB * 1024 * 1024 * 1024)/' \"$(readlink -f \(index))\"")
    }

    func model(_ extra: [String], recipe: String = repoPath("recipes/nemotron-3-super-nvfp4.yaml"), env: String = "") throws -> (out: String, err: String, status: Int32) {
        try runSous(["model", "--recipe", recipe, "--inventory", inventory] + extra,
                    env: "SSH_AUTH_SOCK= XDG_STATE_HOME=\(NSTemporaryDirectory())sous-e2e-state VLLM_API_KEY=\(key) HF_TOKEN= \(env)")
    }

    @Test func aRecipeThatDoesNotFitIsRefusedBeforeAnythingStarts() throws {
        try placeCheckpoint(totalGiB: 250)
        let fit = try sous(["fit", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", inventory])
        #expect(fit.status == 1)
        #expect(fit.out.contains("verdict               does not fit"), "\(fit.out)")
        let r = try up()
        #expect(r.status == 1)
        #expect(r.err.contains("error: fit failed on spark-1: weights 125.0 GiB + allowance 4.0 GiB exceed the budget"), "\(r.err)")
        #expect(!r.out.contains("pull"), "nothing pulled")
        #expect(try exec("spark-1,spark-2", "docker ps -a --format '{{.Names}}' | wc -l") == "spark-1: 0\nspark-2: 0\n")
        // The same checkpoint at a size that fits goes through.
        try placeCheckpoint(totalGiB: 70)
        let ok = try up()
        #expect(ok.status == 0, "\(ok.err)")
        #expect(ok.out.contains("ok      fit"))
    }

    @Test func initWritesAUsableInventoryAndCheckLinkFindsTheMTU() throws {
        let written = dir + "/lab.yaml"
        let args = ["init", "--hosts", "sous@10.213.0.11,sous@10.213.0.12", "--identity-file", dir + "/id_ed25519",
                    "--known-hosts", dir + "/known_hosts", "--cluster", "lab", "--write", written]
        let r = try sous(args)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out == "wrote \(written): 2 nodes, interconnect enp1s0f1np1 10.213.0.11, 10.213.0.12\n")
        let facts = try JSONSerialization.jsonObject(with: Data(try sous(Array(args.dropLast(2)) + ["--json"]).out.utf8)) as? [String: Any]
        #expect(facts?["interface"] as? String == "enp1s0f1np1" && facts?["written"] == nil && (facts?["inventory"] as? String)?.contains("cluster: lab") == true, "\(String(describing: facts))")
        let (inv, issues) = try InventoryReader.load(path: written)
        #expect(issues.isEmpty)
        #expect(inv.hardware == "dgx_spark_gb10" && inv.interface == "enp1s0f1np1" && inv.ncclIbHca == "rocep1s0f1")
        #expect(inv.nodes.map(\.name) == ["spark-1", "spark-2"] && inv.head.name == "spark-1")
        let text = try String(contentsOfFile: written, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropFirst().joined(separator: "\n")
        #expect(text == """
        cluster: lab
        image: vllm/vllm-openai:v0.24.0   # pin the tag or digest you tested
        port: 8000
        api_key_env: VLLM_API_KEY
        launcher: mp
        hardware: dgx_spark_gb10   # every node reports an NVIDIA GB10
        interconnect:
          interface: enp1s0f1np1   # up on every node, one subnet
          master_port: 29501
          nccl_ib_hca: rocep1s0f1   # RoCE devices that ibdev2netdev reports Up
        known_hosts: \(dir)/known_hosts
        nodes:
          # spark-1: Debian GNU/Linux 12 (bookworm); GPU NVIDIA GB10, [N/A]; 125 GiB memory; docker usable; sudo -n ok
          - name: spark-1
            host: 10.213.0.11
            user: sous
            identity_file: \(dir)/id_ed25519
            interconnect_ip: 10.213.0.11
            role: head
          # spark-2: Debian GNU/Linux 12 (bookworm); GPU NVIDIA GB10, [N/A]; 125 GiB memory; docker usable; sudo -n ok
          - name: spark-2
            host: 10.213.0.12
            user: sous
            identity_file: \(dir)/id_ed25519
            interconnect_ip: 10.213.0.12
            role: worker

        """)
        // `sous up` works with it unchanged.
        let upWritten = try sous(["up", "--recipe", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "--inventory", written])
        #expect(upWritten.status == 0, "\(upWritten.err)")
        // An existing file is not overwritten without --force: a diff instead.
        let again = try sous(args.map { $0 == "lab" ? "lab2" : $0 })
        #expect(again.status == 2)
        #expect(again.out.contains("\n-cluster: lab\n") && again.out.contains("\n+cluster: lab2\n"))
        #expect(try sous(args + ["--force"]).status == 0)
        // A node without Docker: init says so and still writes what it found, marked.
        try fault("spark-2", "docker-down")
        let noDocker = try sous(args + ["--force"])
        try fault("spark-2", "reboot")  // the node back with its Docker, by a power cycle
        #expect(noDocker.status == 0)
        #expect(noDocker.err.contains("warning: spark-2: docker is not usable by sous without a password"))
        #expect(try String(contentsOfFile: written, encoding: .utf8).contains("# spark-2: Debian GNU/Linux 12 (bookworm); GPU NVIDIA GB10, [N/A]; 125 GiB memory; docker NOT usable without a password"))

        #expect(try sous(["check-link", "-i", inventory]).out.hasSuffix("link ok\n"))
        let link = try JSONSerialization.jsonObject(with: Data(try sous(["check-link", "-i", inventory, "--json"]).out.utf8)) as? [String: Any]
        #expect(link?["problems"] as? Int == 0 && (link?["nodes"] as? [[String: Any]])?.first?["mtu"] as? String == "9000", "\(String(describing: link))")
        try fault("spark-2", "mtu-1500")
        let mtu = try sous(["check-link", "-i", inventory])
        #expect(mtu.status == 1)
        #expect(mtu.out.contains("MTU MISMATCH on enp1s0f1np1: spark-1 9000, spark-2 1500"))
        // In the node's own /var/lib (its /etc/environment would be this machine's).
        _ = try exec("spark-1", "sudo -n install -d -o sous /var/lib/sous && echo NCCL_IB_GID_INDEX=3 >> /var/lib/sous/vllm.env")
        #expect(try sous(["check-link", "-i", inventory]).err.contains("spark-1: NCCL_IB_GID_INDEX is set"))
    }

    @Test func aForcedQuantizationAgainstTheCheckpointIsRefusedBeforeAnythingStarts() throws {
        #expect(try model(["--fetch"]).status == 0)
        let recipe = dir + "/forced.yaml"
        try (try String(contentsOfFile: repoPath("recipes/nemotron-3-super-nvfp4.yaml"), encoding: .utf8))
            .replacingOccurrences(of: "quantization: auto ", with: "quantization: fp8\nquantization_reason: testing a forced method\n#")
            .write(toFile: recipe, atomically: true, encoding: .utf8)
        let r = try sous(["up", "--recipe", recipe, "--inventory", inventory])
        #expect(r.status == 2, "\(r.out)\n\(r.err)")
        #expect(r.err.contains("error: model failed on spark-1: the recipe forces --quantization fp8, but the checkpoint says modelopt_mixed (config.json quantization_config)"), "\(r.err)")
        #expect(try exec("spark-1,spark-2", "docker ps -a --format '{{.Names}}' | wc -l") == "spark-1: 0\nspark-2: 0\n")
        // With auto, the detected method is reported.
        let ok = try up()
        #expect(ok.status == 0, "\(ok.err)")
        #expect(ok.out.contains("quantization modelopt_mixed from the checkpoint"))
    }

    @Test func anUnreachableNodeExitsThree() throws {
        try fault("spark-2", "sshd-down")
        let r = try up()
        #expect(r.status == 3, "\(r.err)")
        #expect(r.err.contains("error: connect failed on spark-2: spark-2 (sous@10.213.0.12): cannot connect to 10.213.0.12:22: Connection refused"), "\(r.err)")
    }

    @Test func nodesDoNotShareEtcOrVarLib() throws {
        _ = try exec("spark-1", "echo one | sudo -n tee /etc/default/sous-probe >/dev/null; echo one | sudo -n tee /var/lib/sous-probe >/dev/null")
        #expect(try exec("spark-1", "cat /etc/default/sous-probe /var/lib/sous-probe") == "spark-1: one\nspark-1: one\n")
        #expect(try exec("spark-2", "ls /etc/default/sous-probe /var/lib/sous-probe 2>&1 | wc -l; hostname") == "spark-2: 2\nspark-2: spark-2\n")
        #expect(!FileManager.default.fileExists(atPath: "/etc/default/sous-probe"))
    }

    @Test func downRemovesEverything() throws {
        #expect(try up().status == 0)
        let r = try sous(["sim", "down", "--dir", dir])
        #expect(r.status == 0)
        #expect(try sh("ip netns list | grep -c '^sous-spark-' || true") == "0\n")
        #expect(try sh("ip link show sousbr0 >/dev/null 2>&1 && echo present || echo gone") == "gone\n")
        #expect(try sh("ip route show type unreachable | grep -c 10.213.0.0/16 || true") == "0\n")
        // `[s]shd` matches sshd but not this shell's own command line.
        #expect(try sh("pgrep -f '[s]shd -D -f \(dir)' | wc -l") == "0\n")
        // No node's dockerd (and its containerd and shims), no registry, no hub server, no mount left.
        #expect(try sh("pgrep -f '[d]ockerd --config-file /etc/docker/daemon.json' | wc -l") == "0\n")
        #expect(try sh("pgrep -f '[d]ocker-registry serve \(dir)' | wc -l; pgrep -f '[h]ub-serve --hub \(dir)' | wc -l") == "0\n0\n")
        #expect(try sh("grep -c ' \(dir)' /proc/mounts || true") == "0\n")
        // down twice is fine, and up works again after it.
        #expect(try sous(["sim", "down", "--dir", dir]).status == 0)
    }
}
