import ArgumentParser
import Foundation
import SousKit
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

    @Option(help: "Time between probes (30s, 1m).")
    var interval = DurationArg("30s")

    @Option(help: "Consecutive failures before the recovery command runs.")
    var failures = 3

    @Option(help: "How long each probe may take (20s).")
    var probeTimeout = DurationArg("20s")

    @Option(help: "How long to wait after a trigger (doubles each time, up to 10m).")
    var backoff = DurationArg("300s")

    @Option(help: "The recovery command (run with /bin/sh -c).")
    var onFailure: String?

    @Option(name: .customLong("for"), help: "Stop after this long (90s, 1h; default: run until stopped).")
    var duration: DurationArg?

    @Option(help: "Write a systemd unit for this watch to PATH instead of watching.")
    var install: String?

    @Flag(help: "Print each event as a JSON line (event, at, and what it carries) instead of a line of text.")
    var json = false

    func run() async throws {
        let (inv, _) = try InventoryReader.load(path: inventory)
        if let install {
            let exe = Local.selfExecutable
            let args = ["watch", "-i", URL(fileURLWithPath: inventory).standardizedFileURL.path, "--model", model, "--interval", interval.text,
                        "--failures", "\(failures)", "--probe-timeout", probeTimeout.text, "--backoff", backoff.text] + (onFailure.map { ["--on-failure", $0] } ?? [])
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
        let dog = Watchdog(probe: URLSessionProbe(), baseURL: inv.baseURL, model: model, key: key,
                           interval: interval.duration, failures: failures, probeTimeout: probeTimeout.duration,
                           backoff: backoff.duration,
                           log: { [json, failures] event in
                               let at = ISO8601DateFormatter().string(from: Date())
                               if json {
                                   struct Line: Encodable { var at: String; var event: WatchEvent }
                                   FileHandle.standardOutput.write(Data((compactJSON(Line(at: at, event: event)) + "\n").utf8))
                               } else {
                                   FileHandle.standardOutput.write(Data("\(at) \(event.text(failures: failures))\n".utf8))
                               }
                           },
                           recover: {
                               let status = (try? Local.run("/bin/sh", ["-c", onFailure], check: false).status) ?? -1
                               struct Trigger: Encodable { var cluster: String, exit_status: Int32, finished_at: String }
                               if let line = try? JournalOps.line(event: .watchTrigger, Trigger(cluster: cluster, exit_status: status, finished_at: ISO8601DateFormatter().string(from: Date()))) {
                                   JournalOps.appendLocal(line)
                               }
                               return status
                           })
        let triggers = await dog.run(until: duration.map { ContinuousClock.now + $0.duration })
        if json {
            struct End: Encodable { var at: String; var event = "end"; var triggers: Int }
            print(compactJSON(End(at: ISO8601DateFormatter().string(from: Date()), triggers: triggers)))
        } else {
            print("watch ended: \(triggers) recovery run\(triggers == 1 ? "" : "s")")
        }
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

    func run() async throws {
        let (inv, _) = try InventoryReader.load(path: inventory)
        let report = await StatusReport.gather(inv, transport: ssh.transport(for: inv), probe: URLSessionProbe(), model: model, key: optionalAPIKey(inv))
        let rows = report.nodes
        if json { print(encodeJSON(report), terminator: ""); return }
        var table = [["NODE", "ROLE", "REACHABLE", "CONTAINER", "IMAGE", "GPU PROCS", "SSHD OOM", "EARLYOOM"]]
        for r in rows {
            table.append([r.node, r.role, r.reachable ? "yes" : "NO", r.container ?? "-", r.image ?? "-", r.gpu_processes.map(String.init) ?? "-",
                          r.sshd_oom_score_adj ?? "-", r.earlyoom ?? "-"])
        }
        print(formatTable(table), terminator: "")
        print("endpoint \(inv.baseURL): /health \(report.health)" + (report.fingerprint.map { ", fingerprint \($0)" } ?? ""))
        if let e = report.last_journal_entry {
            print("last journal entry: \(e.event.rawValue) \(e.finished_at ?? "") \(e.image ?? e.to ?? "")")
        }
        for r in rows where !r.reachable { Console.error(r.error ?? "\(r.node) unreachable") }
        if rows.contains(where: { !$0.reachable }) { throw ExitCode(ExitStatus.unreachable.rawValue) }
    }
}
