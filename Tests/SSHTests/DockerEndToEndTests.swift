import Foundation
import Testing
import SousKit
import SousTestSupport

/// What the simulated nodes' real Docker daemons and registry do under sous: real pulls, real image IDs and digests,
/// power cycles that keep only what a restart policy keeps, a full disk failing the pull with Docker's own words.
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

    /// sous renders no restart policy: after a power cycle a rank does not come back alone (a head next to a stale
    /// worker hangs, MACHINE.md); a container with a policy does, as Docker decides; `sous up` brings the pair back.
    @Test func aPowerCycleKeepsOnlyWhatARestartPolicyKeeps() throws {
        #expect(try up().status == 0)
        _ = try exec("spark-2", "docker run -d --name keeper --restart unless-stopped --entrypoint sleep vllm/vllm-openai:v0.24.0 3600")
        try fault("spark-2", "reboot")
        let states = try exec("spark-2", "docker inspect --format '{{.Name}} {{.State.Status}}' sous-vllm keeper")
        #expect(states.contains("/sous-vllm exited") && states.contains("/keeper running"), "\(states)")
        let again = try up()
        #expect(again.status == 0, "\(again.err)")
        #expect(again.out.contains("-tp2-"))
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
