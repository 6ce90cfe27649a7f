import ArgumentParser
import Foundation
import SousKit
import SousSim
import SSH

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Watch the endpoint from another machine and run a recovery command after N consecutive failures.",
        discussion: """
        Probes /health and a one-token completion (a wedged NCCL link keeps /health green) every --interval \
        seconds; after --failures consecutive failures runs --on-failure with /bin/sh (a BMC power cycle, a smart \
        plug, `sous up …`), never twice at once, then backs off (--backoff, doubling up to 10 min). Each trigger is \
        journaled locally. --install writes a systemd unit that runs this watch (the key comes from an \
        EnvironmentFile you create with mode 0600).
        """
    )

    @Option(name: [.customShort("i"), .long], help: "Inventory file.")
    var inventory: String

    @Option(help: "The served model name to probe.")
    var model: String

    @Option(help: "Seconds between probes.")
    var interval: Double = 30

    @Option(help: "Consecutive failures before the recovery command runs.")
    var failures = 3

    @Option(help: "Seconds each probe may take.")
    var probeTimeout: Double = 20

    @Option(help: "Seconds to wait after a trigger (doubles each time, up to 600).")
    var backoff: Double = 300

    @Option(help: "The recovery command (run with /bin/sh -c).")
    var onFailure: String?

    @Option(name: .customLong("for"), help: "Stop after this many seconds (default: run until stopped).")
    var duration: Double?

    @Option(help: "Write a systemd unit for this watch to PATH instead of watching.")
    var install: String?

    func run() async throws {
        let (inv, _) = try InventoryReader.load(path: inventory)
        if let install {
            let exe = Local.selfExecutable
            let args = ["watch", "-i", URL(fileURLWithPath: inventory).standardizedFileURL.path, "--model", model, "--interval", "\(interval)",
                        "--failures", "\(failures)", "--probe-timeout", "\(probeTimeout)", "--backoff", "\(backoff)"] + (onFailure.map { ["--on-failure", $0] } ?? [])
            let unit = """
            [Unit]
            Description=sous watchdog for the \(inv.cluster) vLLM cluster
            After=network-online.target

            [Service]
            # Holds \(inv.apiKeyEnv ?? "VLLM_API_KEY")=…; create it with mode 0600.
            EnvironmentFile=/etc/sous/watch.env
            ExecStart=\(try ShellQuote.join([exe] + args))
            Restart=always
            RestartSec=10

            [Install]
            WantedBy=multi-user.target

            """
            try unit.write(toFile: install, atomically: true, encoding: .utf8)
            print("wrote \(install); then: install -m 0600 /dev/null /etc/sous/watch.env, put \(inv.apiKeyEnv ?? "VLLM_API_KEY")=… in it, systemctl daemon-reload && systemctl enable --now \((install as NSString).lastPathComponent)")
            return
        }
        guard let onFailure else { throw UsageError("--on-failure is required (the command that recovers a node)") }
        let key = optionalAPIKey(inv)
        let cluster = inv.cluster
        let dog = Watchdog(probe: URLSessionProbe(), baseURL: "http://\(inv.head.host):\(inv.port)", model: model, key: key,
                           interval: .milliseconds(Int(interval * 1000)), failures: failures, probeTimeout: .milliseconds(Int(probeTimeout * 1000)),
                           backoff: .milliseconds(Int(backoff * 1000)),
                           log: { FileHandle.standardOutput.write(Data("\(ISO8601DateFormatter().string(from: Date())) \($0)\n".utf8)) },
                           recover: {
                               let status = (try? Local.run("/bin/sh", ["-c", onFailure], check: false).status) ?? -1
                               Journal.appendLocal("{\"event\":\"watch-trigger\",\"cluster\":\"\(cluster)\",\"exit_status\":\(status),\"at\":\"\(ISO8601DateFormatter().string(from: Date()))\"}\n")
                               return status
                           })
        let triggers = await dog.run(until: duration.map { ContinuousClock.now + .milliseconds(Int($0 * 1000)) })
        print("watch ended: \(triggers) recovery run\(triggers == 1 ? "" : "s")")
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "One line per node: reachable, container and image, GPU processes, sshd oom_score_adj, earlyoom; then the endpoint.")

    @Option(name: [.customShort("i"), .long], help: "Inventory file.")
    var inventory: String

    @Option(help: "The served model name, to read the fingerprint from a one-token completion.")
    var model: String?

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var ssh: SSHOptions

    struct Row: Encodable {
        var node: String, role: String, reachable: Bool
        var container: String?, image: String?, gpu_processes: Int?, sshd_oom_score_adj: String?, earlyoom: String?, error: String?
    }
    struct Report: Encodable {
        var nodes: [Row]
        var health: String, fingerprint: String?, last_journal_entry: String?
    }

    func run() async throws {
        let (inv, _) = try InventoryReader.load(path: inventory)
        let transport = ssh.transport(for: inv)
        let script = """
        docker inspect --format '{{.State.Status}} {{.Config.Image}}' \(NodePaths.container) 2>/dev/null || echo absent -
        nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | grep -c . || true
        cat /proc/$(systemctl show -p MainPID --value ssh 2>/dev/null || echo 0)/oom_score_adj 2>/dev/null || echo ?
        systemctl is-active earlyoom 2>/dev/null || true
        tail -n 1 \(NodePaths.stateDir)/journal.jsonl 2>/dev/null || true
        """
        let outcomes = await fanOut(inv.nodes) { node in
            try await transport.with(node) { try await $0.run(.shell(script, timeout: .seconds(20))).stdoutText }
        }
        var rows: [Row] = [], journal: String?
        for o in outcomes {
            let role = o.node.role == .head ? "head" : "worker"
            switch o.result {
            case .success(let text):
                let l = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                let c = (l.first ?? "").split(separator: " ").map(String.init)
                rows.append(Row(node: o.node.name, role: role, reachable: true, container: c.first, image: c.count > 1 ? c[1] : nil,
                                gpu_processes: l.count > 1 ? Int(l[1]) : nil, sshd_oom_score_adj: l.count > 2 ? l[2] : nil,
                                earlyoom: l.count > 3 ? l[3] : nil, error: nil))
                if o.node.role == .head, l.count > 4, !l[4].isEmpty { journal = l[4] }
            case .failure(let e):
                rows.append(Row(node: o.node.name, role: role, reachable: false, error: (e as? SousFailure)?.message ?? "\(e)"))
            }
        }
        let probe = URLSessionProbe()
        let base = "http://\(inv.head.host):\(inv.port)"
        let health = (try? await probe.get(base + "/health", bearer: nil, timeout: .seconds(5))).map { "\($0.status)" } ?? "no answer"
        var fingerprint: String?
        if let model {
            if let r = try? await probe.post(base + "/v1/chat/completions", json: AgentChecks.pingRequest(model: model), bearer: optionalAPIKey(inv), timeout: .seconds(20)) {
                fingerprint = (try? JSONSerialization.jsonObject(with: r.body) as? [String: Any])?["system_fingerprint"] as? String
            }
        }
        let report = Report(nodes: rows, health: health, fingerprint: fingerprint, last_journal_entry: journal)
        if json { print(encodeJSON(report), terminator: ""); return }
        var table = [["NODE", "ROLE", "REACHABLE", "CONTAINER", "IMAGE", "GPU PROCS", "SSHD OOM", "EARLYOOM"]]
        for r in rows {
            table.append([r.node, r.role, r.reachable ? "yes" : "NO", r.container ?? "-", r.image ?? "-", r.gpu_processes.map(String.init) ?? "-",
                          r.sshd_oom_score_adj ?? "-", r.earlyoom ?? "-"])
        }
        print(formatTable(table), terminator: "")
        print("endpoint \(base): /health \(health)" + (fingerprint.map { ", fingerprint \($0)" } ?? ""))
        if let journal, let obj = try? JSONSerialization.jsonObject(with: Data(journal.utf8)) as? [String: Any] {
            print("last journal entry: \(obj["event"] ?? "?") \(obj["finished_at"] ?? obj["at"] ?? "") \(obj["image"] ?? obj["to"] ?? "")")
        }
        for r in rows where !r.reachable { Console.error(r.error ?? "\(r.node) unreachable") }
        if rows.contains(where: { !$0.reachable }) { throw ExitCode(ExitStatus.unreachable.rawValue) }
    }
}
