import Foundation
import Testing
@testable import SousKit
import SousSim

@Suite struct CheckpointTests {
    typealias Q = CheckpointStatus.Quantization

    @Test func quantizationIsReadInVLLMsOrder() {
        // config.json quantization_config first.
        #expect(Checkpoint.detectQuantization(configJSON: #"{"quantization_config": {"quant_method": "fp8", "fmt": "e4m3"}}"#, hfQuantConfigJSON: nil)
                == Q(method: "fp8", source: "config.json quantization_config", kvCache: nil))
        #expect(Checkpoint.detectQuantization(configJSON: #"{"quantization_config": {"quant_method": "mxfp4"}}"#,
                                              hfQuantConfigJSON: #"{"quantization": {"quant_algo": "NVFP4"}}"#)?.method == "mxfp4")
        // ModelOpt written into config.json: refined by its quant_algo; the KV cache as kv_cache_scheme.
        #expect(Checkpoint.detectQuantization(configJSON: #"{"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}}"#, hfQuantConfigJSON: nil)
                == Q(method: "modelopt_fp4", source: "config.json quantization_config", kvCache: "FP8", algorithm: "NVFP4"))
        #expect(Checkpoint.detectQuantization(configJSON: #"{"quantization_config": {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "kv_cache_scheme": {"dynamic": false, "num_bits": 8, "type": "float"}}}"#, hfQuantConfigJSON: nil)
                == Q(method: "modelopt_mixed", source: "config.json quantization_config", kvCache: "FP8", algorithm: "MIXED_PRECISION"))
        // hf_quant_config.json comes before compression_config (vLLM attaches it as the quantization config).
        #expect(Checkpoint.detectQuantization(configJSON: #"{"compression_config": {"format": "float-quantized"}}"#,
                                              hfQuantConfigJSON: #"{"quantization": {"quant_algo": "FP8"}}"#)?.source == "hf_quant_config.json")
        // compressed-tensors, with an FP8 KV cache scheme.
        #expect(Checkpoint.detectQuantization(configJSON: #"{"compression_config": {"format": "float-quantized", "kv_cache_scheme": {"type": "float", "num_bits": 8}}}"#, hfQuantConfigJSON: nil)
                == Q(method: "compressed-tensors", source: "config.json compression_config", kvCache: "FP8"))
        // ModelOpt's hf_quant_config.json.
        #expect(Checkpoint.detectQuantization(configJSON: "{}", hfQuantConfigJSON: #"{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}}"#)
                == Q(method: "modelopt_fp4", source: "hf_quant_config.json", kvCache: "FP8", algorithm: "NVFP4"))
        #expect(Checkpoint.detectQuantization(configJSON: "{}", hfQuantConfigJSON: #"{"quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": null}}"#)
                == Q(method: "modelopt", source: "hf_quant_config.json", kvCache: nil, algorithm: "FP8"))
        #expect(Checkpoint.detectQuantization(configJSON: #"{"torch_dtype": "bfloat16"}"#, hfQuantConfigJSON: nil) == nil)
    }

    /// Every quant_algo in vLLM's QUANT_ALGOS (modelopt.py) gets vLLM's method name; another is named as refused.
    @Test(arguments: [("FP8", "modelopt"), ("FP8_PER_CHANNEL_PER_TOKEN", "modelopt"), ("fp8_pb_wo", "modelopt"), ("NVFP4", "modelopt_fp4"),
                      ("W4A16_NVFP4", "modelopt_fp4"), ("MXFP8", "modelopt_mxfp8"), ("MIXED_PRECISION", "modelopt_mixed")])
    func everyModelOptAlgorithmHasVLLMsName(_ algo: String, _ method: String) {
        for (config, hf) in [(#"{"quantization_config": {"quant_method": "modelopt", "quant_algo": "\#(algo)"}}"#, nil),
                             ("{}", #"{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "\#(algo)"}}"#)] as [(String, String?)] {
            let q = Checkpoint.detectQuantization(configJSON: config, hfQuantConfigJSON: hf)
            #expect(q?.method == method && q?.algorithm == algo.uppercased() && q?.problem == nil)
        }
        let unknown = Checkpoint.detectQuantization(configJSON: "{}", hfQuantConfigJSON: #"{"quantization": {"quant_algo": "INT4_AWQ"}}"#)
        #expect(unknown?.problem?.hasPrefix("ModelOpt quant_algo INT4_AWQ is not one vLLM loads") == true)
        #expect(Checkpoint.quantizationAgrees(forced: method, checkpoint: method))
    }

    /// The shipped checkpoints of the simulated hub, read as vLLM reads them.
    @Test func theShippedCheckpointsDeclareWhatThePublishedOnesDo() throws {
        func detect(_ model: String) throws -> Q? {
            let r = try #require(SimHub.repos.first { $0.model == model })
            return Checkpoint.detectQuantization(configJSON: r.config, hfQuantConfigJSON: r.hfQuantConfig)
        }
        #expect(try detect("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4") == Q(method: "modelopt_mixed", source: "config.json quantization_config", kvCache: "FP8", algorithm: "MIXED_PRECISION"))
        #expect(try detect("Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8") == Q(method: "fp8", source: "config.json quantization_config", kvCache: nil))
        #expect(try detect("Qwen/Qwen3-30B-A3B-Thinking-2507-FP8") == Q(method: "fp8", source: "config.json quantization_config", kvCache: nil))
        #expect(try detect("openai/gpt-oss-120b") == Q(method: "mxfp4", source: "config.json quantization_config", kvCache: nil))
    }

    @Test func forcedMethodsAndKVWarnings() {
        #expect(Checkpoint.quantizationAgrees(forced: "modelopt_fp4", checkpoint: "modelopt_fp4"))
        #expect(Checkpoint.quantizationAgrees(forced: "gptq_marlin", checkpoint: "gptq"))
        #expect(!Checkpoint.quantizationAgrees(forced: "fp8", checkpoint: "modelopt_fp4"))
        let nvfp4 = Q(method: "modelopt_fp4", source: "hf_quant_config.json", kvCache: "FP8")
        #expect(Checkpoint.kvCacheWarning(nvfp4, recipeKVDtype: "auto") == "the checkpoint was calibrated for an FP8 KV cache (hf_quant_config.json); the recipe's kv_cache_dtype is auto")
        #expect(Checkpoint.kvCacheWarning(nvfp4, recipeKVDtype: "fp8") == nil)
        #expect(Checkpoint.kvCacheWarning(nil, recipeKVDtype: "auto") == nil)
    }

    let repo = HFRepo(model: "org/m", revision: nil, cache: "/c")
    let index = #"{"metadata": {"total_size": 2000}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#

    func output(files: [String], headers: [String], index: String? = nil) -> String {
        "M 131072000\nR 0123abcd\n" + (files + headers).joined(separator: "\n") + "\n\u{1e}\n{\"torch_dtype\": \"bfloat16\"}\n\u{1e}\n\(index ?? self.index)\n\u{1e}\n\n"
    }

    @Test func aCompleteSnapshot() {
        let s = Checkpoint.parse(output(files: ["F f 24 config.json", "F f 10 tokenizer.json", "F f 120 model.safetensors.index.json",
                                                "F f 1088 model-00001-of-00002.safetensors", "F f 1088 model-00002-of-00002.safetensors"],
                                        headers: ["H 80 1000 model-00001-of-00002.safetensors", "H 80 1000 model-00002-of-00002.safetensors"]), repo: repo)
        #expect(s.state == .present && s.problems.isEmpty)
        #expect(s.revision == "0123abcd" && s.bytes == 24 + 10 + 120 + 2 * 1088 && s.memTotal == 131_072_000 * 1024)
        #expect(s.fit?.weightBytes == 2000)
    }

    @Test func whatMakesASnapshotIncomplete() {
        let s = Checkpoint.parse(output(files: ["F f 24 config.json", "F f 120 model.safetensors.index.json", "F N 52 model-00001-of-00002.safetensors"],
                                        headers: []), repo: repo)
        #expect(s.state == .incomplete)
        #expect(s.problems == ["no tokenizer (one of tokenizer.json, tokenizer.model, tekken.json, vocab.json)",
                               "model-00001-of-00002.safetensors is missing", "model-00002-of-00002.safetensors is missing"])
        let t = Checkpoint.parse(output(files: ["F f 24 config.json", "F f 10 tokenizer.model", "F f 120 model.safetensors.index.json",
                                                "F f 1088 model-00001-of-00002.safetensors", "F f 600 model-00002-of-00002.safetensors", "F f 3 model.safetensors"],
                                        headers: ["H 80 1000 model-00001-of-00002.safetensors", "H 80 1000 model-00002-of-00002.safetensors"]), repo: repo)
        #expect(t.problems == ["model-00002-of-00002.safetensors is 600 bytes, its header says 1088 (truncated or still downloading)"])
        #expect(t.broken == ["model-00002-of-00002.safetensors"])
        let u = Checkpoint.parse(output(files: ["F f 24 config.json", "F f 10 tokenizer.json", "F f 3 model.safetensors"],
                                        headers: ["H x x model.safetensors"], index: ""), repo: repo)
        #expect(u.problems == ["model.safetensors has no readable safetensors header (3 bytes)"])
        let missing = Checkpoint.parse("M 1000\n", repo: HFRepo(model: "org/m", revision: "v1", cache: "/c"))
        #expect(missing.state == .missing && missing.problems == ["no snapshot for revision v1 in /c/hub/models--org--m"])
    }

    @Test func hashesThatDoNotMatchMakeAFileBroken() {
        let files = ["F f 24 config.json", "F f 10 tokenizer.json", "F f 120 model.safetensors.index.json",
                     "F f 1088 model-00001-of-00002.safetensors", "F f 1088 model-00002-of-00002.safetensors"]
        let headers = ["H 80 1000 model-00001-of-00002.safetensors", "H 80 1000 model-00002-of-00002.safetensors"]
        let ok = Checkpoint.parse(output(files: files, headers: headers + ["X ok config.json", "X ok model-00001-of-00002.safetensors"]), repo: repo)
        #expect(ok.state == .present && ok.verified)
        let bad = Checkpoint.parse(output(files: files, headers: headers + ["X ok config.json", "X bad model-00002-of-00002.safetensors"]), repo: repo)
        #expect(bad.state == .incomplete && !bad.verified && bad.broken == ["model-00002-of-00002.safetensors"])
        #expect(bad.problems == ["model-00002-of-00002.safetensors: its content does not match its hash (corrupt)"])
        // A path with spaces keeps them.
        let spaced = Checkpoint.parse(output(files: files + ["F f 5 extra notes.txt"], headers: headers + ["X bad extra notes.txt"]), repo: repo)
        #expect(spaced.broken == ["extra notes.txt"])
        // Blobs not named by a hash (a copy made outside the hub's layout) cannot be verified.
        #expect(!Checkpoint.parse(output(files: files, headers: headers + ["X - config.json"]), repo: repo).verified)
    }

    /// Untrusted metadata (from the Hub or a node's cache) with sizes no model has: reported naming the file and
    /// the key, never a crash. Before, `head_dim: 4e18` and a shard offset near Int.max trapped (exit 132).
    @Test func implausibleMetadataIsAProblemNotACrash() {
        let files = ["F f 24 config.json", "F f 10 tokenizer.json", "F f 120 model.safetensors.index.json",
                     "F f 1088 model-00001-of-00002.safetensors", "F f 1088 model-00002-of-00002.safetensors"]
        let headers = ["H 80 1000 model-00001-of-00002.safetensors", "H 80 1000 model-00002-of-00002.safetensors"]
        func status(config: String = #"{"torch_dtype": "bfloat16"}"#, index: String? = nil, files: [String]? = nil, headers: [String]? = nil, mem: String = "131072000") -> CheckpointStatus {
            let out = "M \(mem)\nR 0123abcd\n" + ((files ?? []) + (headers ?? [])).joined(separator: "\n") + "\n\u{1e}\n\(config)\n\u{1e}\n\(index ?? self.index)\n\u{1e}\n\n"
            return Checkpoint.parse(out, repo: repo)
        }
        let headDim = status(config: #"{"num_hidden_layers": 4, "head_dim": 4e18}"#, files: files, headers: headers)
        #expect(headDim.state == .incomplete && headDim.fit == nil)
        #expect(headDim.problems == ["config.json has an implausible head_dim: 4e+18 (a whole number 0…16777216 is expected)"])
        let nested = status(config: #"{"text_config": {"num_key_value_heads": -8}}"#, files: files, headers: headers)
        #expect(nested.problems == ["config.json has an implausible text_config.num_key_value_heads: -8 (a whole number 0…16777216 is expected)"])
        let negative = status(index: #"{"metadata": {"total_size": -9223372036854775808}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
                              files: files, headers: headers)
        #expect(negative.problems == ["model.safetensors.index.json has an implausible metadata.total_size: -9223372036854775808 (a whole number 0…1125899906842624 is expected)"])
        let mamba = status(config: #"{"hybrid_override_pattern": "M*", "mamba_num_heads": 1e15, "mamba_head_dim": 64}"#, files: files, headers: headers)
        #expect(mamba.problems == ["config.json has an implausible mamba_num_heads: 1000000000000000.0 (a whole number 0…16777216 is expected)"])
        // A shard header whose data end is near Int.max: 8 + length + end overflowed.
        let offsets = status(files: files, headers: ["H 80 1000 model-00001-of-00002.safetensors", "H 16 9223372036854775800 model-00002-of-00002.safetensors"])
        #expect(offsets.problems == ["model-00002-of-00002.safetensors has an implausible safetensors header (header length 16, data end 9223372036854775800)"])
        #expect(offsets.broken == ["model-00002-of-00002.safetensors"])
        // File sizes that add up past Int.max, and a MemTotal that overflows once in bytes.
        let sizes = status(files: files + ["F f 9223372036854775807 a.bin", "F f 9223372036854775807 b.bin"], headers: headers, mem: "9223372036854775807")
        #expect(sizes.problems == ["the snapshot's file sizes add up past 9223372036854775807 bytes (implausible)"] && sizes.memTotal == 0)
    }

    @Test func aLocalCheckpointWithImplausibleSizesSaysWhich() throws {
        let dir = NSTemporaryDirectory() + "sous-local-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"num_hidden_layers": 4, "head_dim": 4e18}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        try #"{"metadata": {"total_size": 1000}}"#.write(toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        let s = try Checkpoint.local(dir, memTotal: 1 << 37)
        #expect(s.state == .incomplete && s.fit == nil)
        #expect(s.problems == ["config.json has an implausible head_dim: 4e+18 (a whole number 0…16777216 is expected)"])
    }

    /// The remote script against a real directory: a snapshot made of links into blobs/, one shard truncated.
    @Test func theStatusScriptReadsARealCache() throws {
        let root = NSTemporaryDirectory() + "sous-ckpt-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = HFRepo(model: "org/m", revision: nil, cache: root)
        let snap = r.dir + "/snapshots/0123abcd"
        try FileManager.default.createDirectory(atPath: snap, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: r.dir + "/blobs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: r.dir + "/refs", withIntermediateDirectories: true)
        try "0123abcd".write(toFile: r.dir + "/refs/main", atomically: true, encoding: .utf8)
        func shard(_ n: Int) -> Data {
            var header = #"{"t":{"dtype":"U8","shape":[\#(n)],"data_offsets":[0,\#(n)]}}"#
            while header.utf8.count % 8 != 0 { header += " " }
            var d = Data()
            var len = UInt64(header.utf8.count).littleEndian
            withUnsafeBytes(of: &len) { d.append(contentsOf: $0) }
            return d + Data(header.utf8) + Data(repeating: 7, count: n)
        }
        let files: [String: Data] = ["config.json": Data("{}".utf8), "tokenizer.json": Data("{}".utf8), "model.safetensors.index.json": Data(index.utf8),
                                     "model-00001-of-00002.safetensors": shard(1000), "model-00002-of-00002.safetensors": shard(1000).prefix(500)]
        for (name, data) in files {
            try data.write(to: URL(fileURLWithPath: r.dir + "/blobs/" + name + ".blob"))
            try FileManager.default.createSymbolicLink(atPath: snap + "/" + name, withDestinationPath: "../../blobs/\(name).blob")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", try Checkpoint.statusScript(r)]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let s = Checkpoint.parse(out, repo: r)
        #expect(s.revision == "0123abcd")
        #expect(s.files["model-00001-of-00002.safetensors"] == shard(1000).count)
        #expect(s.problems == ["model-00002-of-00002.safetensors is 500 bytes, its header says \(shard(1000).count) (truncated or still downloading)"])
    }

    @Test func progressLines() {
        #expect(TransferProgress(node: "spark-2", phase: "copy from spark-1 (rsync)", done: 3 << 30, total: 70 << 30, rate: Double(400 << 20)).line
                == "spark-2 copy from spark-1 (rsync): 3.0 GiB / 70.0 GiB, 400.0 MiB/s, 2m52s left")
        #expect(TransferProgress(node: "spark-1", phase: "download (hf on the host)", done: 5120, total: 74 << 30, estimated: true, rate: 0).line
                == "spark-1 download (hf on the host): 5.0 KiB / ~74.0 GiB")
    }
}

@Suite struct CheckpointAuditTests {
    func status(_ state: CheckpointStatus.State = .present, rev: String? = "0123456789abcdef", files: [String: Int] = ["config.json": 10, "model.safetensors": 100],
                problems: [String] = []) -> CheckpointStatus {
        CheckpointStatus(state: state, revision: rev, bytes: files.values.reduce(0, +), files: files, problems: problems, memTotal: 0)
    }

    @Test func findings() {
        let head = status()
        #expect(Audit.checkpoint(head, head: head, headName: "spark-1", isHead: true) == Finding(kind: .ok, text: "checkpoint 0123456789ab complete (110 B)"))
        #expect(Audit.checkpoint(status(), head: head, headName: "spark-1", isHead: false) == Finding(kind: .ok, text: "checkpoint 0123456789ab complete (110 B), same as spark-1's"))
        #expect(Audit.checkpoint(status(rev: "fedcba9876543210"), head: head, headName: "spark-1", isHead: false)
                == Finding(kind: .drift, text: "checkpoint at revision fedcba987654, spark-1 has 0123456789ab"))
        #expect(Audit.checkpoint(status(files: ["config.json": 10, "model.safetensors": 99]), head: head, headName: "spark-1", isHead: false)
                == Finding(kind: .drift, text: "checkpoint files differ from spark-1's: model.safetensors"))
        #expect(Audit.checkpoint(status(.missing, rev: nil, files: [:], problems: ["no snapshot for refs/main in /c"]), head: head, headName: "spark-1", isHead: false)
                == Finding(kind: .drift, text: "checkpoint missing: no snapshot for refs/main in /c"))
    }
}
