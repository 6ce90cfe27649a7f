import Foundation
import Testing
@testable import SousKit

/// `sous recipes import` and `sous recipes diff` on vllm-project/recipes model files: the two examples the issue
/// gave, the counterparts of the shipped recipes at 8959cf6 (Tests/SousKitTests/Data/vllm-recipes), and small
/// files written here for each error.
@Suite struct RecipeImportTests {
    static let data = "Tests/SousKitTests/Data/vllm-recipes"
    static let gptOss = repoPath("\(data)/gpt-oss-120b.yaml")
    static let qwenCoder = repoPath("\(data)/Qwen3-Coder-480B-A35B-Instruct.yaml")
    static let nemotronHead = repoPath("\(data)/8959cf6/nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16.yaml")
    static let gptOssHead = repoPath("\(data)/8959cf6/openai/gpt-oss-120b.yaml")

    static func pair() throws -> Inventory { try InventoryReader.load(path: repoPath("inventory/two-sparks.yaml")).0 }

    /// A cache with no models in it, so a test never reads the machine's own Hugging Face cache.
    static let emptyCache = ["HF_HUB_CACHE": "/nonexistent/sous-test-hf-cache"]

    static func options(_ path: String, variant: String? = nil, features: [String] = [], inventory: Inventory? = nil,
                        checkpoint: String? = nil, env: [String: String] = emptyCache) -> RecipeImporter.Options {
        var o = RecipeImporter.Options(path: path, outputFile: "imported.yaml")
        (o.variant, o.features, o.inventory, o.checkpoint, o.environment) = (variant, features, inventory, checkpoint, env)
        return o
    }

    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sous-import-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func errors(_ o: RecipeImporter.Options) -> [ConfigIssue] {
        do { _ = try RecipeImporter.run(o); return [] } catch { return error.issues.filter { $0.severity == .error } }
    }

    // MARK: the two examples, for a DGX Spark pair

    @Test func gptOssOnTheSparkPair() throws {
        let r = try RecipeImporter.run(Self.options(Self.gptOss, inventory: try Self.pair()))
        #expect(r.recipe.model == "openai/gpt-oss-120b" && r.recipe.toolCallParser == "openai" && r.recipe.reasoningParser == nil)
        #expect(r.recipe.tensorParallelSize == 2 && r.recipe.engine.maxModelLen == 131072 && r.recipe.minVLLMVersion == VLLMVersion(0, 10, 0))
        #expect(r.recipe.engine(for: "dgx_spark_gb10").env.isEmpty && r.recipe.engine.extraArgs.isEmpty)
        #expect(r.text.contains("model: openai/gpt-oss-120b        # gpt-oss-120b.yaml:23 model.model_id\n"))
        #expect(r.text.contains("  tool_call: openai               # gpt-oss-120b.yaml:36 features.tool_calling.args (with --enable-auto-tool-choice)\n"))
        #expect(r.text.contains("max_model_len: 131072             # gpt-oss-120b.yaml:28 model.context_length\n"))
        // The opt-in speculative decoding is named, not imported; so are the AMD variant and override.
        #expect(r.text.contains("#   gpt-oss-120b.yaml:40: features.spec_decoding: opt-in; turn it on with --features spec_decoding\n"))
        #expect(r.text.contains("#   gpt-oss-120b.yaml:59: variants.amd_fp8: another variant (amd/gpt-oss-120b-w-mxfp4-a-fp8); import it with --variant amd_fp8\n"))
        #expect(r.text.contains("#   gpt-oss-120b.yaml:73: hardware_overrides.amd: not dgx_spark_gb10 (NVIDIA blackwell)\n"))
        // No generation_config.json anywhere: sampling and the output budget are left for the user, and it says so.
        #expect(r.recipe.sampling.isEmpty)
        #expect(r.text.contains("# sampling: left for you: openai/gpt-oss-120b is not in the local Hugging Face cache (/nonexistent/sous-test-hf-cache).\n"))
        #expect(r.text.contains("  output: 32768                   # left for you: sous default (max_model_len/4, at most 32768)"))
        // It renders on the pair: the parser flags, no B200 variable.
        let d = try Deployment.make(recipe: r.recipe, inventory: try Self.pair())
        let flags = Renderer(d).sharedFlags()
        #expect(flags.contains { $0 == ("tool-call-parser", "openai") } && flags.contains { $0.flag == "enable-auto-tool-choice" })
        #expect(!flags.contains { $0.flag == "reasoning-parser" })
    }

    @Test func gptOssWithItsOptInFeature() throws {
        let r = try RecipeImporter.run(Self.options(Self.gptOss, features: ["spec_decoding"], inventory: try Self.pair()))
        #expect(r.recipe.engine.extraArgs.map(\.flag) == ["speculative-config"])
        #expect(r.recipe.engine.extraArgs.first?.value == .value(#"{"model":"nvidia/gpt-oss-120b-Eagle3-v3","num_speculative_tokens":7,"method":"eagle3","draft_tensor_parallel_size":1}"#))
        #expect(r.text.contains(#"  speculative_config: "{\"model\":\"nvidia/gpt-oss-120b-Eagle3-v3\",\"num_speculative_tokens\":7,\"method\":\"eagle3\",\"draft_tensor_parallel_size\":1}" # gpt-oss-120b.yaml:47 features.spec_decoding.args"#))
    }

    @Test func qwenCoderNvfp4OnTheSparkPair() throws {
        let r = try RecipeImporter.run(Self.options(Self.qwenCoder, variant: "nvfp4", inventory: try Self.pair()))
        #expect(r.recipe.model == "nvidia/Qwen3-Coder-480B-A35B-Instruct-NVFP4" && r.recipe.toolCallParser == "qwen3_coder")
        #expect(r.recipe.engine.kvCacheDtype == "fp8" && r.recipe.engine.maxModelLen == 262144)
        #expect(r.recipe.engine.env.map { "\($0.name)=\($0.value)" } == ["VLLM_USE_FLASHINFER_MOE_FP4=1"])
        #expect(r.text.contains("kv_cache_dtype: fp8               # Qwen3-Coder-480B-A35B-Instruct.yaml:61 variants.nvfp4.extra_args\n"))
        #expect(r.text.contains("; on vLLM 0.24.0 the same parser as mimo, qwen3_xml\n"))
        #expect(r.text.contains("dependencies[0]: an install step (`export VLLM_USE_DEEP_GEMM=1`, optional): sous runs the pinned image as it is\n"))
        #expect(r.notes.contains("variants.nvfp4.vram_minimum_gb is 288 GB, more than the 2 × 128 GB of 2 dgx_spark_gb10 nodes: `sous fit` will say whether it fits"))
        let d = try Deployment.make(recipe: r.recipe, inventory: try Self.pair())
        let renderer = Renderer(d)
        #expect(renderer.sharedFlags().contains { $0 == ("kv-cache-dtype", "fp8") })
        let env = renderer.env(for: d.inventory.head, rank: 0).map(\.name)
        #expect(env.contains("VLLM_USE_FLASHINFER_MOE_FP4"))
    }

    /// The CLI writes the file; `sous recipes` lists it and `sous render` renders it.
    @Test func theWrittenRecipeValidatesAndRenders() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (file, extra, name) in [(Self.gptOss, [String](), "gpt-oss-120b"), (Self.qwenCoder, ["--variant", "nvfp4"], "qwen3-coder-nvfp4")] {
            let w = try runSous(["recipes", "import", file, "-i", "inventory/two-sparks.yaml", "--write", "\(dir)/\(name).yaml"] + extra, env: "HF_HUB_CACHE=/nonexistent")
            #expect(w.status == 0, "\(w.err)")
            #expect(w.out.hasPrefix("wrote \(dir)/\(name).yaml: "))
            let render = try runSous(["render", "--recipe", "\(dir)/\(name).yaml", "--inventory", "inventory/two-sparks.yaml"])
            #expect(render.status == 0, "\(render.err)")
            #expect(render.out.contains("--tool-call-parser"))
        }
        let list = try runSous(["recipes", "--dir", dir])
        #expect(list.status == 0, "\(list.err)")
        #expect(list.out.contains("gpt-oss-120b ") && list.out.contains("qwen3-coder-nvfp4 "))
        // A second write does not overwrite (exit 2), unless --force.
        let again = try runSous(["recipes", "import", Self.gptOss, "--write", "\(dir)/gpt-oss-120b.yaml"])
        #expect(again.status == 2 && again.err.contains("\(dir)/gpt-oss-120b.yaml exists; nothing was written"), "\(again.err)")
    }

    // MARK: the shipped recipes' counterparts

    /// The newer gpt-oss file gives every Blackwell GPU the B200 variable; on a Spark it is left out, and listed.
    @Test func theB200VariableIsLeftOutOnTheSpark() throws {
        let r = try RecipeImporter.run(Self.options(Self.gptOssHead, inventory: try Self.pair()))
        #expect(!r.recipe.engine(for: "dgx_spark_gb10").env.contains { $0.name == "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" })
        #expect(r.text.contains("#   gpt-oss-120b.yaml:69: hardware_overrides.blackwell.extra_env.VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8: left out on dgx_spark_gb10: a B200 setting"))
        #expect(r.text.contains("vLLM issue #41477 reports the FlashInfer MXFP4 MoE kernels unsupported on SM121 (GB10)\n"))
    }

    /// Nemotron's nvfp4 variant with a local checkpoint: sampling and output budget from its generation_config.json.
    @Test func samplingFromTheCheckpointsGenerationConfig() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"temperature": 1.0, "top_p": 0.95, "top_k": "x", "max_new_tokens": 32768, "eos_token_id": [2, 11]}"#
            .write(toFile: dir + "/generation_config.json", atomically: true, encoding: .utf8)
        let r = try RecipeImporter.run(Self.options(Self.nemotronHead, variant: "nvfp4", inventory: try Self.pair(), checkpoint: dir))
        #expect(r.recipe.sampling.map { "\($0.key)=\($0.value.text)" } == ["temperature=1.0", "top_p=0.95"])
        #expect(r.recipe.clientOutput == 32768 && r.recipe.clientContext == 262144 - 32768)
        #expect(r.text.contains("  temperature: 1.0                # \(dir)/generation_config.json temperature\n"))
        #expect(r.text.contains("  output: 32768                   # \(dir)/generation_config.json max_new_tokens\n"))
        #expect(r.text.contains("#   generation_config.json: sampling: top_k is not a number\n"))
        // The file's parsers (qwen3_xml is qwen3_coder's alias on 0.24), trust_remote_code from base_args.
        #expect(r.recipe.toolCallParser == "qwen3_xml" && r.recipe.reasoningParser == "nemotron_v3" && r.recipe.trustRemoteCode)
        #expect(r.text.contains("; on vLLM 0.24.0 the same parser as mimo, qwen3_coder\n"))
        // The nvfp4 variant's overrides are for other GPUs; the DGX Station's are listed.
        #expect(r.text.contains("variants.nvfp4.hardware_overrides.dgx_station_gb300: not dgx_spark_gb10 (NVIDIA blackwell)\n"))
    }

    /// The same lookup in a Hugging Face cache: refs/main names the snapshot.
    @Test func generationConfigFromTheHuggingFaceCache() throws {
        let hub = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: hub) }
        let commit = String(repeating: "ab", count: 20)
        let repo = hub + "/models--openai--gpt-oss-120b"
        try FileManager.default.createDirectory(atPath: repo + "/refs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: repo + "/snapshots/" + commit, withIntermediateDirectories: true)
        try commit.write(toFile: repo + "/refs/main", atomically: true, encoding: .utf8)
        try #"{"temperature": 1.0, "top_p": 1.0}"#.write(toFile: repo + "/snapshots/\(commit)/generation_config.json", atomically: true, encoding: .utf8)
        let r = try RecipeImporter.run(Self.options(Self.gptOss, inventory: try Self.pair(), env: ["HF_HUB_CACHE": hub]))
        #expect(r.recipe.sampling.map { "\($0.key)=\($0.value.text)" } == ["temperature=1.0", "top_p=1.0"])
        #expect(r.text.contains("# \(repo)/snapshots/\(commit)/generation_config.json top_p\n"))
        // HF_HOME/hub when HF_HUB_CACHE is not set (huggingface_hub's order).
        #expect(GenerationConfig.hubCache(["HF_HOME": "/x/hf"]) == "/x/hf/hub")
        #expect(GenerationConfig.hubCache(["HF_HUB_CACHE": "/c", "HF_HOME": "/x/hf"]) == "/c")
    }

    // MARK: what is not copied, what is checked

    static let managed = """
    model:
      model_id: "org/some-model"
      min_vllm_version: "0.11.0"
      context_length: 65536
      base_args:
        - "--host"
        - "0.0.0.0"
        - "--port=8000"
        - "--served-model-name"
        - "x"
        - "-tp"
        - "4"
        - "--max-num-seqs"
        - "8"
        - "--enable-prefix-caching"
        - "--no-enable-log-requests"
        - "-cc.use_inductor_graph_partition=True"
        - "--data-parallel-size"
        - "2"
      base_env:
        NCCL_SOCKET_IFNAME: "$IFACE_NAME"
        NCCL_IB_GID_INDEX: "3"
        VLLM_SOMETHING: "1"
    features:
      tool_calling:
        args: ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
      reasoning:
        args: ["--reasoning-parser", "nemotron_v3"]
    variants:
      default:
        precision: bf16
        hardware_overrides:
          dgx_spark_gb10:
            extra_args: ["--max-num-seqs", "4", "--gpu-memory-utilization", "0.7"]
    compatible_strategies: [single_node_tp]
    """

    @Test func flagsSousManagesAreNotCopiedAndTheRestAreListed() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.managed.write(toFile: dir + "/m.yaml", atomically: true, encoding: .utf8)
        let r = try RecipeImporter.run(Self.options(dir + "/m.yaml", inventory: try Self.pair()))
        #expect(r.recipe.engine.extraArgs.map(\.flag) == ["max-num-seqs", "enable-prefix-caching", "enable-log-requests"])
        #expect(r.recipe.engine.extraArgs.map(\.value) == [.value("8"), .on, .off])
        let spark = r.recipe.engine(for: "dgx_spark_gb10")
        #expect(spark.extraArgs.first { $0.flag == "max-num-seqs" }?.value == .value("4") && spark.gpuMemoryUtilization == 0.7)
        #expect(r.recipe.engine.env.map(\.name) == ["VLLM_SOMETHING"])
        for line in ["m.yaml:6: model.base_args: --host 0.0.0.0: not copied: sous renders --host from the inventory (head only)",
                     "m.yaml:8: model.base_args: --port 8000: not copied: sous renders --port from the inventory's port",
                     "m.yaml:11: model.base_args: --tensor-parallel-size 4: not copied: sous renders --tensor-parallel-size from tensor_parallel_size",
                     "m.yaml:17: model.base_args: -cc.use_inductor_graph_partition True: sous's extra_args take long flags; write it as the long flag vLLM has for it",
                     "m.yaml:18: model.base_args: --data-parallel-size 2: not copied: sous runs one tensor-parallel engine over the inventory's GPUs (tensor_parallel_size 2)",
                     "m.yaml:21: model.base_env.NCCL_SOCKET_IFNAME: not copied: sous writes NCCL_SOCKET_IFNAME from interconnect.interface",
                     "m.yaml:22: model.base_env.NCCL_IB_GID_INDEX: not copied: a pinned GID index hangs the tensor-parallel handshake when the RoCE GID table drifts"] {
            #expect(r.text.contains("#   " + line + "\n"), "\(line)")
        }
        // nemotron_v3 arrived in 0.17.1: min_vllm_version is raised, and says why.
        #expect(r.recipe.minVLLMVersion == VLLMVersion(0, 17, 1))
        #expect(r.text.contains("min_vllm_version: 0.17.1          # raised from 0.11.0 (m.yaml:3 model.min_vllm_version): nemotron_v3 is registered from vLLM 0.17.1 on\n"))
        #expect(r.text.contains("# Note: vllm-project/recipes does not offer multi_node_tp for this model on dgx_spark_gb10 (compatible_strategies at line 35)"))
    }

    @Test func aParserTheImagesReleaseLacksIsAnError() throws {
        var o = Self.options(Self.nemotronHead, variant: "nvfp4")
        o.vllm = VLLMVersion(0, 11, 0)
        let e = errors(o)
        #expect(e.map(\.description) == ["\(Self.nemotronHead):42:9: error: features.reasoning.args: `nemotron_v3` is not a registered reasoning parser in vLLM 0.11.0 (the image's release); vLLM would refuse to start\n  hint: it first appears in vLLM 0.17.1: use a newer image"])
    }

    // MARK: errors, each with its file and line

    static let broken = """
    model:
      model_id: "org/m"
      min_vllm_version: "0.17.1"
      context_length: 8192
      base_args: []
    features:
      tool_calling:
        args: ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
      spec_decoding:
        args: ["--speculative-config", '{"method":"mtp"}']
    opt_in_features:
      - spec_decodng
    variants:
      default:
        precision: bf16
      fp8:
        precision: fp8
        hardware_overrides:
          dgx_spark_gb10:
            extra_args:
              - "--max-num-seqs"
              - "8"
              - "--max-num-seqs"
              - "16"
              - "--enable-prefix-caching"
              - "--no-enable-prefix-caching"
            extra_env:
              VLLM_X: "1"
    hardware_overrides:
      dgx_spark_gb10:
        extra_env:
          VLLM_X: "0"
    compatible_strategies: [multi_node_tp]
    """

    func brokenFile() throws -> (String, String) {
        let dir = try tempDir()
        try Self.broken.write(toFile: dir + "/b.yaml", atomically: true, encoding: .utf8)
        return (dir, dir + "/b.yaml")
    }

    @Test func anUnknownFeatureNamesItsLine() throws {
        let (dir, file) = try brokenFile()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let e = errors(Self.options(file, features: ["tool_calls"]))
        #expect(e.map(\.description) == [
            "\(file):12:5: error: opt_in_features[0]: unknown feature `spec_decodng`\n  hint: did you mean `spec_decoding`? features: tool_calling, spec_decoding",
            "\(file):7:3: error: features.tool_calls: unknown feature `tool_calls` (named in --features)\n  hint: did you mean `tool_calling`? features: tool_calling, spec_decoding",
        ])
    }

    @Test func aMissingVariantNamesItsLine() throws {
        let (dir, file) = try brokenFile()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let e = errors(Self.options(file, variant: "fp4")).filter { !$0.keyPath.hasPrefix("opt_in") }
        #expect(e.map(\.description) == ["\(file):14:3: error: variants.fp4: no variant `fp4` in this file\n  hint: did you mean `fp8`? variants: default, fp8"])
        let cli = try runSous(["recipes", "import", file, "--variant", "fp4"])
        #expect(cli.status == 2 && cli.err.contains("\(file):14:3: error: variants.fp4: no variant `fp4` in this file"), "\(cli.err)")
    }

    @Test func aConflictingHardwareOverrideNamesItsLines() throws {
        let (dir, file) = try brokenFile()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let e = errors(Self.options(file, variant: "fp8")).filter { !$0.keyPath.hasPrefix("opt_in") }
        #expect(e.map(\.description) == [
            "\(file):23:13: error: variants.fp8.hardware_overrides.dgx_spark_gb10.extra_args[2]: --max-num-seqs 16 conflicts with --max-num-seqs 8 at line 21 of the same hardware override\n  hint: keep one of them in variants.fp8.hardware_overrides.dgx_spark_gb10.extra_args",
            "\(file):26:13: error: variants.fp8.hardware_overrides.dgx_spark_gb10.extra_args[5]: --no-enable-prefix-caching conflicts with --enable-prefix-caching at line 25 of the same hardware override\n  hint: keep one of them in variants.fp8.hardware_overrides.dgx_spark_gb10.extra_args",
            "\(file):32:15: error: hardware_overrides.dgx_spark_gb10.extra_env.VLLM_X: VLLM_X=0 conflicts with VLLM_X=1 in variants.fp8.hardware_overrides.dgx_spark_gb10.extra_env.VLLM_X (line 28): both apply to dgx_spark_gb10\n  hint: keep one value for dgx_spark_gb10",
        ])
    }

    // MARK: diff

    @Test func diffOfTheShippedGptOss() throws {
        let r = try runSous(["recipes", "diff", "gpt-oss-120b", Self.gptOssHead, "--vllm", "0.24.0"])
        #expect(r.status == 1, "\(r.err)")
        #expect(r.out == """
        recipes/gpt-oss-120b.yaml against \(Self.gptOssHead) (variant default, hardware dgx_spark_gb10, vLLM 0.24.0):
          only in sous         parsers.reasoning: sous openai_gptoss | vllm-project -
          only in vllm-project env.VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8: sous - | vllm-project 1 (gpt-oss-120b.yaml:69 hardware_overrides.blackwell.extra_env); sous leaves it out on dgx_spark_gb10: a B200 setting (vllm-project/recipes models/openai/gpt-oss-120b.yaml guide: "Blackwell (B200) with FlashInfer MXFP4+MXFP8 MoE"); vLLM issue #41477 reports the FlashInfer MXFP4 MoE kernels unsupported on SM121 (GB10)
          same: model, min_vllm_version, max_model_len, parsers.tool_call, kv_cache_dtype, trust_remote_code, quantization
        2 differences

        """)
    }

    @Test func diffOfTheShippedNemotronByRelease() throws {
        let on24 = try runSous(["recipes", "diff", "nemotron-3-super-nvfp4", Self.nemotronHead, "-i", "inventory/two-sparks.yaml"])
        #expect(on24.status == 1)
        #expect(on24.out == """
        recipes/nemotron-3-super-nvfp4.yaml against \(Self.nemotronHead) (variant nvfp4, hardware dgx_spark_gb10, vLLM 0.24.0):
          differs              kv_cache_dtype: sous fp8 | vllm-project auto (not set in the file: vLLM's default)
          only in sous         extra_args.max_num_seqs: sous 8 | vllm-project -
          only in sous         extra_args.max_num_batched_tokens: sous 16384 | vllm-project -
          only in sous         extra_args.mamba_ssm_cache_dtype: sous float32 | vllm-project -
          only in sous         env.VLLM_FLOAT32_MATMUL_PRECISION: sous high | vllm-project -
          same: model, min_vllm_version, max_model_len, parsers.tool_call (vllm-project's qwen3_xml is the same parser on vLLM 0.24.0), parsers.reasoning, trust_remote_code, quantization
        5 differences

        """)
        // Before 0.24 qwen3_coder and qwen3_xml are two parsers.
        let on21 = try runSous(["recipes", "diff", "nemotron-3-super-nvfp4", Self.nemotronHead, "--vllm", "0.21.0", "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(on21.out.utf8)) as! [String: Any]
        let rows = json["rows"] as! [[String: Any]]
        let tool = rows.first { $0["key"] as? String == "parsers.tool_call" }!
        #expect(tool["status"] as? String == "differs" && tool["note"] as? String == "different parsers on vLLM 0.21.0")
        #expect(tool["vllm_project_at"] as? String == "NVIDIA-Nemotron-3-Super-120B-A12B-BF16.yaml:37 features.tool_calling.args")
        #expect(json["differences"] as? Int == 6 && on21.status == 1)
    }

    @Test func aRecipeImportedUnchangedHasNoDifferences() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try runSous(["recipes", "import", Self.qwenCoder, "--variant", "nvfp4", "--write", "\(dir)/q.yaml"], env: "HF_HUB_CACHE=/nonexistent")
        #expect(w.status == 0, "\(w.err)")
        let d = try runSous(["recipes", "diff", "\(dir)/q.yaml", Self.qwenCoder])
        #expect(d.status == 0, "\(d.out)\(d.err)")
        #expect(d.out.hasSuffix("  same: model, min_vllm_version, max_model_len, parsers.tool_call, parsers.reasoning, kv_cache_dtype, trust_remote_code, quantization, env.VLLM_USE_FLASHINFER_MOE_FP4\nno differences\n"))
    }
}
