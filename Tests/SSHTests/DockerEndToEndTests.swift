import Foundation
import Testing
import SousKit
import SousTestSupport

/// What the simulated nodes' real Docker daemons and registry do under sous: real pulls, real image IDs and digests,
/// a power cycle the group comes back from by itself, a full disk failing the pull with Docker's own words.
extension SimEndToEndTests {
    @Test func theFirstUpPullsFromTheRegistryAndEveryNodeHoldsTheSameImage() throws {
        #expect(try exec("spark-1,spark-2", "docker images -q | wc -l") == "spark-1: 0\nspark-2: 0\n", "node caches start empty")
        #expect(try up().status == 0)
        // Each node asked the registry for the manifest (its access log: `ADDR - - [time] "GET /v2/…/manifests/…"`).
        let log = try String(contentsOfFile: dir + "/registry.log", encoding: .utf8).split(separator: "\n")
        for addr in ["10.213.0.11", "10.213.0.12"] {
            #expect(log.contains { $0.hasPrefix("\(addr) - - [") && $0.contains("/v2/vllm/vllm-openai/manifests/") }, "\(addr) pulled through the registry mirror")
        }
        let inspect = try exec("spark-1,spark-2", "docker image inspect --format '{{.Id}} {{index .RepoDigests 0}}' vllm/vllm-openai:v0.24.0")
        let lines = inspect.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1).last.map(String.init) ?? "" }
        #expect(lines.count == 2 && lines[0] == lines[1], "\(inspect)")
        #expect(lines[0].hasPrefix("sha256:") && lines[0].contains(" vllm/vllm-openai@sha256:"), "\(inspect)")
    }

    /// A rebooted node brings its group back without a person (Keeper): the ranks have Docker's restart policy, and
    /// the keeper ends a rank whose peer went away so that both start over together. Nothing here runs sous between
    /// the power cycle and the check; the first wait sends no request, so only rank 0's keeper can find the lost rank.
    @Test func aRebootedNodeBringsTheGroupBackByItself() throws {
        #expect(try up().status == 0)
        let headStarted = try exec("spark-1", "docker inspect --format '{{.State.StartedAt}}' sous-vllm")
        // The worker: rank 0 does not notice while idle; its keeper's one-token probe does (every 30 s), rank 0
        // ends, Docker starts it, and the rebooted worker (which joined the rank 0 about to end) starts over.
        try fault("spark-2", "reboot")
        let clock = ContinuousClock(), t = clock.now
        var restarted = false
        while !restarted && clock.now - t < .seconds(150) {
            Thread.sleep(forTimeInterval: 2)
            restarted = (try? exec("spark-1", "docker inspect --format '{{.State.StartedAt}}' sous-vllm")).map { $0 != headStarted && $0.hasPrefix("spark-1: 20") } ?? false
        }
        #expect(restarted, "rank 0 was not restarted by its keeper after its worker rebooted")
        let afterWorker = try servesTP2Again(within: .seconds(120))
        // rank 0: the worker's keeper sees rank 0's rendezvous connection closed and ends the worker too.
        try fault("spark-1", "reboot")
        let afterHead = try servesTP2Again(within: .seconds(120))
        #expect(try exec("spark-2", "docker logs sous-vllm 2>&1").contains("sous-keeper: rank 0's rendezvous connection is gone: ending this rank"))
        // Both.
        try fault("spark-1", "reboot")
        try fault("spark-2", "reboot")
        let afterBoth = try servesTP2Again(within: .seconds(120))
        print("reboot recovery on the simulated pair (0.4 s load): worker \(afterWorker), head \(afterHead), both \(afterBoth)")
        let audit = try sous(["audit", "-r", repoPath("recipes/nemotron-3-super-nvfp4.yaml"), "-i", inventory])
        #expect(audit.status == 0, "the group that came back runs what the recipe renders: \(audit.out)\(audit.err)")
    }

    /// Polls a real completion through the head until its fingerprint shows tp2 (what a client sees); the time it took.
    func servesTP2Again(within bound: Duration) throws -> String {
        let clock = ContinuousClock(), t = clock.now
        while clock.now - t < bound {
            let r = try Local.run("/usr/bin/curl", ["-s", "-m", "5", "-H", "Authorization: Bearer \(key)", "-H", "Content-Type: application/json", "-d",
                                                    #"{"model":"nvidia/nemotron-3-super","max_tokens":1,"messages":[{"role":"user","content":"ping"}]}"#,
                                                    "http://10.213.0.11:8000/v1/chat/completions"], check: false)
            if r.output.contains("-tp2-") { return String(format: "%.0f s", (clock.now - t).seconds) }
            Thread.sleep(forTimeInterval: 2)
        }
        Issue.record("the pair did not serve tp2 again within \(bound)")
        return "never"
    }

    /// Found only with the real daemon: with a registry mirror, a pull the mirror cannot finish (here the layer does
    /// not fit) falls back to Docker Hub, and the error Docker reports is the fallback's; the full disk is only in
    /// the daemon's log. sous's hint says where to look.
    @Test func aFullDiskFailsThePullWithDockersOwnWordsAndStartsNothing() throws {
        try fault("spark-2", "disk-full")
        let r = try up()
        #expect(r.status == 1, "\(r.out)\(r.err)")
        #expect(r.err.contains("error: pull failed on spark-2: Get \"https://registry-1.docker.io/v2/\""), "\(r.err)")
        #expect(r.err.contains("hint: spark-2 could not pull through its registry mirror"), "\(r.err)")
        let daemonLog = try String(contentsOfFile: dir + "/nodes/spark-2/dockerd.log", encoding: .utf8)
        #expect(daemonLog.contains("no space left on device"), "the cause is in the daemon's log")
        #expect(try exec("spark-1,spark-2", "docker ps -a --format '{{.Names}}' | wc -l") == "spark-1: 0\nspark-2: 0\n")
    }
}
