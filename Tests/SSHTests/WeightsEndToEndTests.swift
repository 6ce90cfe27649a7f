import Foundation
import Testing
import SousKit
import SousTestSupport

/// The checkpoint on every node (`sous model`, and the model step of `up`) on the simulated pair: the stand-in
/// hub, the modelled `hf` CLI, real rsync over real SSH between the nodes' own addresses.
extension SimEndToEndTests {
    static let nemotronRepo = "/home/sous/.cache/huggingface/hub/models--nvidia--NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4"

    func modelJSON(_ r: (out: String, err: String, status: Int32)) throws -> [String: [String: Any]] {
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [[String: Any]], "\(r.out)\n\(r.err)")
        return Dictionary(uniqueKeysWithValues: rows.map { ($0["node"] as! String, $0) })
    }

    /// Sizes of every file of the snapshot, as the node sees them through the links.
    func snapshotSizes(_ node: String, _ repo: String = nemotronRepo) throws -> String {
        try exec(node, "cd \(repo)/snapshots/* && find -L . -type f -printf '%s %P\\n' | sort -k2")
            .replacingOccurrences(of: "\(node): ", with: "")
    }

    @Test func missingEverywhereIsDownloadedOnceAndCopied() throws {
        let before = try model([])
        #expect(before.status == 1)
        #expect(before.out.contains("spark-1  missing") && before.out.contains("spark-2  missing"), "\(before.out)")
        #expect(before.out.hasSuffix("next: sous model --recipe \(repoPath("recipes/nemotron-3-super-nvfp4.yaml")) --inventory \(inventory) --fetch\n"))

        let r = try model(["--fetch", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let nodes = try modelJSON(r)
        #expect(nodes["spark-1"]?["action"] as? String == "downloaded (hf on the host)")
        #expect(nodes["spark-2"]?["action"] as? String == "copied from spark-1 (rsync over 10.213.0.12)")
        #expect(r.err.contains("spark-2 copy from spark-1 (rsync): 3.7 MiB / 3.7 MiB"), "\(r.err)")
        for n in ["spark-1", "spark-2"] {
            let status = try #require(nodes[n]?["status"] as? [String: Any])
            #expect(status["state"] as? String == "present")
            #expect((status["quantization"] as? [String: Any])?["method"] as? String == "modelopt_mixed")
        }
        // The hub served the head only (the index first, then the rest), and both nodes hold the same bytes.
        // (the hub server's request log: client address first; spark-1 is 10.213.0.11, spark-2 10.213.0.12)
        let served = try String(contentsOfFile: dir + "/hub/.requests.log", encoding: .utf8).split(separator: "\n")
        #expect(served.contains { $0.hasPrefix("10.213.0.11 GET /cdn/") } && !served.contains { $0.hasPrefix("10.213.0.12 ") }, "\(served)")
        let sizes = try snapshotSizes("spark-1")
        #expect(sizes.contains("model-00003-of-00003.safetensors") && sizes.contains("tokenizer.json"))
        #expect(try snapshotSizes("spark-2") == sizes)

        // Then `up` finds it everywhere and changes nothing about it.
        let up = try up()
        #expect(up.status == 0, "\(up.err)")
        #expect(up.out.contains("ok      model") && up.out.contains("3.6 MiB on 2 nodes"), "\(up.out)")
    }

    @Test func presentOnTheHeadOnlyIsCopied() throws {
        #expect(try model(["--fetch"]).status == 0)
        _ = try exec("spark-2", "rm -rf \(Self.nemotronRepo)")
        let r = try model(["--fetch", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let nodes = try modelJSON(r)
        #expect(nodes["spark-1"]?["action"] == nil)
        #expect(nodes["spark-2"]?["before"] as? String == "missing")
        #expect(nodes["spark-2"]?["action"] as? String == "copied from spark-1 (rsync over 10.213.0.12)")
        #expect(try snapshotSizes("spark-2") == (try snapshotSizes("spark-1")))
    }

    @Test func aTruncatedShardIsReportedAndRepaired() throws {
        #expect(try model(["--fetch"]).status == 0)
        let shard = "\(Self.nemotronRepo)/snapshots/*/model-00002-of-00003.safetensors"
        _ = try exec("spark-2", "truncate -s -1000 \"$(readlink -f \(shard))\"")
        let r = try model([])
        #expect(r.status == 1)
        #expect(r.out.contains("spark-2  incomplete"), "\(r.out)")
        #expect(r.out.contains("  spark-2: model-00002-of-00003.safetensors is 2189336 bytes, its header says 2190336 (truncated or still downloading)"), "\(r.out)")
        // Nothing starts on a broken checkpoint without --fetch.
        let up = try self.up(["--no-fetch"])
        #expect(up.status == 1)
        #expect(up.err.contains("error: model failed on spark-2: nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4 is incomplete: model-00002-of-00003.safetensors is 2189336 bytes"), "\(up.err)")
        #expect(try exec("spark-1,spark-2", "docker ps -a --format '{{.Names}}' | wc -l") == "spark-1: 0\nspark-2: 0\n")

        let fixed = try model(["--fetch", "--json"])
        #expect(fixed.status == 0, "\(fixed.err)")
        #expect(try modelJSON(fixed)["spark-2"]?["action"] as? String == "copied from spark-1 (rsync over 10.213.0.12)")
        #expect(try snapshotSizes("spark-2") == (try snapshotSizes("spark-1")))

        // Broken on the head: the complete copy on the worker comes back over the interconnect.
        _ = try exec("spark-1", "truncate -s 100 \"$(readlink -f \(shard))\"")
        let head = try model(["--fetch", "--json"])
        #expect(head.status == 0, "\(head.err)")
        #expect(try modelJSON(head)["spark-1"]?["action"] as? String == "copied from spark-2 (rsync over 10.213.0.11)")
        // Broken on both: fetched again from the hub, then copied.
        _ = try exec("spark-1,spark-2", "truncate -s 100 \"$(readlink -f \(shard))\"")
        let both = try modelJSON(try model(["--fetch", "--json"]))
        #expect(both["spark-1"]?["action"] as? String == "downloaded (hf on the host)")
        #expect(both["spark-2"]?["action"] as? String == "copied from spark-1 (rsync over 10.213.0.12)")
        #expect(try snapshotSizes("spark-1") == (try snapshotSizes("spark-2")))
    }

    @Test func verifyFindsACorruptFileOfTheRightSizeAndFetchRepairsIt() throws {
        #expect(try model(["--fetch"]).status == 0)
        let shard = "\(Self.nemotronRepo)/snapshots/*/model-00002-of-00003.safetensors"
        _ = try exec("spark-2", "printf X | dd of=\"$(readlink -f \(shard))\" bs=1 seek=5000 conv=notrunc 2>/dev/null")
        #expect(try model([]).status == 0, "sizes alone cannot see it")
        let r = try model(["--verify"])
        #expect(r.status == 1)
        #expect(r.out.contains("  spark-2: model-00002-of-00003.safetensors: its content does not match its hash (corrupt)"), "\(r.out)")
        #expect(r.out.hasSuffix("--fetch --verify\n"))
        let fixed = try model(["--fetch", "--verify", "--json"])
        #expect(fixed.status == 0, "\(fixed.err)")
        let nodes = try modelJSON(fixed)
        #expect(nodes["spark-2"]?["action"] as? String == "copied from spark-1 (rsync over 10.213.0.12)")
        #expect((nodes["spark-2"]?["status"] as? [String: Any])?["verified"] as? Bool == true)
        #expect(try model(["--verify"]).out.contains("verified: every file on every node matches its hash"))
    }

    /// A copy of the Nemotron recipe serving another model of the stand-in hub.
    func recipe(for model: String) throws -> String {
        let path = dir + "/\(model.replacingOccurrences(of: "/", with: "-")).yaml"
        try (try String(contentsOfFile: repoPath("recipes/nemotron-3-super-nvfp4.yaml"), encoding: .utf8))
            .replacingOccurrences(of: "model: nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4", with: "model: \(model)")
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(arguments: [
        ("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4", "modelopt_mixed", "config.json quantization_config", "FP8"),
        ("sim-org/tiny-fp8-modelopt", "modelopt", "hf_quant_config.json", nil),
        ("sim-org/tiny-compressed", "compressed-tensors", "config.json compression_config", "FP8"),
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "fp8", "config.json quantization_config", nil),
    ] as [(String, String, String, String?)])
    func eachDetectionPathGivesTheMethod(_ model: String, _ method: String, _ source: String, _ kv: String?) throws {
        let r = try self.model(["--fetch", "--json"], recipe: try recipe(for: model))
        #expect(r.status == 0, "\(r.err)")
        let q = try #require((try modelJSON(r)["spark-2"]?["status"] as? [String: Any])?["quantization"] as? [String: Any])
        #expect(q["method"] as? String == method)
        #expect(q["source"] as? String == source)
        #expect(q["kvCache"] as? String == kv)
    }

    @Test func aPinnedRevisionIsFetchedAndAnUnknownOneIsBadInput() throws {
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/hub/sim-org/tiny-compressed/.sim-repo.json"))) as! [String: Any]
        let commit = try #require(meta["revision"] as? String)
        let pinned = try recipe(for: "sim-org/tiny-compressed")
        try (try String(contentsOfFile: pinned, encoding: .utf8)).replacingOccurrences(of: "\nmodel: sim-org/tiny-compressed\n", with: "\nmodel: sim-org/tiny-compressed\nrevision: \(commit)\n")
            .write(toFile: pinned, atomically: true, encoding: .utf8)
        let r = try model(["--fetch", "--json"], recipe: pinned)
        #expect(r.status == 0, "\(r.err)")
        #expect((try modelJSON(r)["spark-2"]?["status"] as? [String: Any])?["revision"] as? String == commit)

        try (try String(contentsOfFile: pinned, encoding: .utf8)).replacingOccurrences(of: "revision: \(commit)", with: "revision: 0000000000000000000000000000000000000000")
            .write(toFile: pinned, atomically: true, encoding: .utf8)
        let unknown = try model(["--fetch"], recipe: pinned)
        #expect(unknown.status == 2)
        #expect(unknown.err.contains("error: model failed on spark-1: sim-org/tiny-compressed has no revision 0000000000000000000000000000000000000000"), "\(unknown.err)")
    }

    @Test func aGatedModelNeedsTheTokenWhichTravelsOnlyInAFile() throws {
        let recipe = try recipe(for: "sim-org/tiny-gated")
        let r = try model(["--fetch"], recipe: recipe)
        #expect(r.status == 2)
        #expect(r.err.contains("error: model failed on spark-1: sim-org/tiny-gated is a gated model: access must be requested on its page (https://huggingface.co/sim-org/tiny-gated) and HF_TOKEN is not set"), "\(r.err)")
        #expect(r.err.contains("hint: request access at https://huggingface.co/sim-org/tiny-gated (accept its license), then export HF_TOKEN=hf_…"), "\(r.err)")

        let wrong = try model(["--fetch"], recipe: recipe, env: "HF_TOKEN=hf_not_a_real_one")
        #expect(wrong.status == 2)
        #expect(wrong.err.contains("the hub rejected the token in HF_TOKEN (invalid or expired)"), "\(wrong.err)")

        let token = try String(contentsOfFile: dir + "/hub/.tokens", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let ok = try model(["--fetch"], recipe: recipe, env: "HF_TOKEN=\(token)")
        #expect(ok.status == 0, "\(ok.err)")
        #expect(!ok.out.contains(token) && !ok.err.contains(token))
        // Only in a 0600 file while the download ran, removed afterwards; never on a command line.
        #expect(try exec("spark-1", "ls ~/.cache/sous/hf-token 2>&1 | grep -c 'No such file'") == "spark-1: 1\n")
        #expect(try exec("spark-1", "grep -l \(token) ~/.cache/sous/*.log 2>/dev/null | wc -l") == "spark-1: 0\n")
    }

    @Test func withoutACLIOnTheHostTheImagesCLIDownloads() throws {
        try fault("spark-1", "no-host-hf")
        let r = try model(["--fetch", "--json"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try modelJSON(r)["spark-1"]?["action"] as? String == "downloaded (hf in vllm/vllm-openai:v0.24.0)")
        #expect(try snapshotSizes("spark-2") == (try snapshotSizes("spark-1")))
    }

    @Test func anInterruptedDownloadGoesOnAndTheNextRunAttachesToIt() throws {
        // 12 MiB at 4 MiB/s on the head: about 3 s of download.
        #expect(try sous(["sim", "hub-add", "--dir", dir, "bench/slow", "--shards", "3", "--shard-bytes", String(4 << 20)]).status == 0)
        // The hub's link at 4 MiB/s (SimHubServer reads <hub>/.rate at every transfer).
        try String(4 << 20).write(toFile: dir + "/hub/.rate", atomically: true, encoding: .utf8)
        let recipe = try recipe(for: "bench/slow")
        // sous stopped (SIGTERM, as Ctrl-C) once the download shows progress: it says so, and the download runs on.
        let (status, text) = try interrupt(["model", "--recipe", recipe, "--inventory", inventory, "--fetch"], once: "spark-1 download (hf on the host): ", env: "HF_TOKEN=")
        #expect(status == 130, "\(text)")
        #expect(text.contains("error: model failed on spark-1: interrupted (SIGTERM); the download (hf on the host) goes on on spark-1; run the same command again to follow it"), "\(text)")
        // (hf fetches up to 8 files at once: each shard being written is a partial file)
        #expect(try exec("spark-1", "ls ~/.cache/huggingface/hub/models--bench--slow/blobs | grep -q incomplete && echo partial") == "spark-1: partial\n")
        // The next run attaches to it instead of starting another, and finishes the job.
        let again = try model(["--fetch", "--json"], recipe: recipe)
        #expect(again.status == 0, "\(again.err)")
        #expect(again.err.contains("spark-1 download (hf on the host), attached to the run started earlier: "), "\(again.err)")
        #expect(try modelJSON(again)["spark-2"]?["action"] as? String == "copied from spark-1 (rsync over 10.213.0.12)")
        #expect(try exec("spark-1", "ls ~/.cache/huggingface/hub/models--bench--slow/blobs | grep -c incomplete || true") == "spark-1: 0\n")
        #expect(try snapshotSizes("spark-2", "/home/sous/.cache/huggingface/hub/models--bench--slow") == (try snapshotSizes("spark-1", "/home/sous/.cache/huggingface/hub/models--bench--slow")))
    }

    @Test func nodesThatCannotLogInToEachOtherGetAStreamThroughSous() throws {
        try fault("spark-2", "no-node-ssh")
        let r = try model(["--fetch", "--json"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try modelJSON(r)["spark-2"]?["action"] as? String == "copied from spark-1 (stream through sous: spark-1 cannot log in to sous@10.213.0.12)")
        #expect(r.err.contains("spark-2 copy from spark-1 (stream through sous): 3.7 MiB / 3.7 MiB"), "\(r.err)")
        #expect(try snapshotSizes("spark-2") == (try snapshotSizes("spark-1")))
        // The same bytes, not only the same sizes.
        let sums = try exec("spark-1,spark-2", "cd \(Self.nemotronRepo)/snapshots/* && cat model-0000*.safetensors | md5sum | cut -c1-32")
            .split(separator: "\n").map { $0.split(separator: " ").last.map(String.init) ?? "" }
        #expect(sums.count == 2 && sums[0] == sums[1] && sums[0].count == 32, "\(sums)")
    }
}
