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
        let log = try String(contentsOfFile: dir + "/registry.log", encoding: .utf8)
        #expect(log.contains("GET /v2/vllm/vllm-openai/manifests/v0.24.0"), "the nodes pulled through the registry mirror")
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

    @Test func aFullDiskFailsThePullWithDockersOwnWordsAndStartsNothing() throws {
        try fault("spark-2", "disk-full")
        let r = try up()
        #expect(r.status == 1, "\(r.out)\(r.err)")
        #expect(r.err.contains("error: pull failed on spark-2"), "\(r.err)")
        #expect(r.err.contains("no space left on device"), "\(r.err)")
        #expect(r.err.contains("spark-2's Docker data root is full"), "\(r.err)")
        #expect(try exec("spark-1,spark-2", "docker ps -a --format '{{.Names}}' | wc -l") == "spark-1: 0\nspark-2: 0\n")
    }
}
