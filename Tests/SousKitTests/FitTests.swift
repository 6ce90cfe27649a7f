import Foundation
import Testing
@testable import SousKit
import SousSim
import SousTestSupport

/// Exact arithmetic on small fake checkpoints, against hand computations.
@Suite struct FitTests {
    let GiB = 1024 * 1024 * 1024

    func engine(gmu: Double, maxLen: Int, kv: String = "auto", extra: [(String, FlagValue)] = []) -> EngineSettings {
        EngineSettings(kvCacheDtype: kv, maxModelLen: maxLen, gpuMemoryUtilization: gmu, enableChunkedPrefill: true,
                       extraArgs: extra.map { (flag: $0.0, value: $0.1) }, env: [])
    }

    @Test func dense() {
        // 4 layers × 2 (K,V) × ceil(2 KV heads / 2 ranks) × head_dim 512/8 × 2 bytes (bf16) = 1024 B per token per rank.
        let input = FitInput(config: ["num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 512,
                                      "torch_dtype": "bfloat16"], weightBytes: 10 * GiB, totalMemory: 32 * GiB)
        let r = Fit.compute(input, tp: 2, engine: engine(gmu: 0.5, maxLen: 65536), profile: nil)
        #expect(r.kv_bytes_per_token_per_rank == 1024)
        #expect(r.weights_per_rank == 5 * GiB)
        #expect(r.budget == 16 * GiB)
        // 16 − 5 − 4 (allowance) = 7 GiB of KV cache = 7 × 2^30 / 1024 tokens.
        #expect(r.kv_cache_bytes == 7 * GiB)
        #expect(r.kv_tokens == 7 * 1024 * 1024)
        #expect(r.context_at_concurrency == 7 * 1024 * 1024 / 256)
        #expect(r.verdict == .fitsWithWarnings)
        #expect(r.messages == ["256 sequences of 65536 tokens do not fit at once: each gets 28672 when all are full"])
    }

    @Test func moeWithFP8KVThatDoesNotFit() {
        // A Qwen3-30B-A3B-like MoE: 48 layers, 4 KV heads, head_dim 128, fp8 KV: 2 × 48 × 2 × 128 × 1 = 24576 B.
        let input = FitInput(config: ["num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                                      "num_experts": 128, "num_experts_per_tok": 8, "torch_dtype": "bfloat16"],
                             weightBytes: 60 * GiB, totalMemory: 40 * GiB)
        let r = Fit.compute(input, tp: 2, engine: engine(gmu: 0.9, maxLen: 262144, kv: "fp8", extra: [("max-num-seqs", .value("4"))]), profile: nil)
        #expect(r.kv_bytes_per_token_per_rank == 24576)
        // budget 36 GiB − 30 − 4 = 2 GiB → 2 × 2^30 / 24576 = 87381 tokens.
        #expect(r.kv_tokens == 87381)
        #expect(r.verdict == .doesNotFit)
        #expect(r.messages == ["max_model_len 262144 does not fit: the KV cache holds 87381 tokens (vLLM refuses to start); the largest that fits is 87040"])
    }

    @Test func hybridMambaCountsAttentionLayersAndAFixedState() {
        // "M*M-M*": 2 attention layers, 3 Mamba layers.
        let input = FitInput(config: ["num_hidden_layers": 6, "hybrid_override_pattern": "M*M-M*", "num_attention_heads": 16,
                                      "num_key_value_heads": 2, "head_dim": 128, "mamba_num_heads": 8, "mamba_head_dim": 64,
                                      "ssm_state_size": 128, "n_groups": 2, "conv_kernel": 4, "torch_dtype": "bfloat16"],
                             weightBytes: 8 * GiB, totalMemory: 32 * GiB)
        let r = Fit.compute(input, tp: 2, engine: engine(gmu: 0.5, maxLen: 32768, kv: "fp8",
                                                       extra: [("max-num-seqs", .value("8")), ("mamba-ssm-cache-dtype", .value("float32"))]), profile: nil)
        #expect(r.attention_layers == 2)
        // 2 × 2 layers × 1 head × 128 × 1 byte.
        #expect(r.kv_bytes_per_token_per_rank == 512)
        // Per Mamba layer: SSM 8 × 64 × 128 × 4 B = 262144, conv 3 × (512 + 2 × 2 × 128) × 2 B = 6144; × 3 layers ÷ 2 ranks.
        #expect(r.mamba_state_bytes_per_sequence == 3 * (262144 + 6144) / 2)
        // 16 − 4 − 4 GiB, minus 8 sequences of Mamba state.
        #expect(r.kv_cache_bytes == 8 * GiB - 8 * 402432)
        #expect(r.kv_tokens == (8 * GiB - 8 * 402432) / 512)
        #expect(r.verdict == .fits)
    }

    @Test func osHeadroomWarningOnTheSpark() {
        let input = FitInput(config: ["num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 512, "torch_dtype": "bfloat16"],
                             weightBytes: 2 * GiB, totalMemory: 128 * GiB)
        let r = Fit.compute(input, tp: 2, engine: engine(gmu: 0.9, maxLen: 4096, extra: [("max-num-seqs", .value("1"))]),
                            profile: HardwareProfile.known["dgx_spark_gb10"])
        #expect(r.verdict == .fitsWithWarnings)
        #expect(r.messages == ["only 12.8 GiB left for the OS (0.10 of 128.0 GiB); dgx_spark_gb10 wants at least 0.15"])
        #expect(Fit.clientMessage(r, clientContext: r.kv_tokens + 1) != nil)
    }

    /// Sizes no model has: the files are refused naming the key; a hand-made input whose products overflow gives
    /// a "does not fit" report saying so. Before, each of these trapped on arithmetic overflow (exit 132).
    @Test func implausibleSizesNeverTrap() throws {
        let index = #"{"metadata": {"total_size": 1000}}"#
        #expect(throws: FitInput.Implausible.self) { try FitInput(configJSON: #"{"head_dim": 4e18}"#, indexJSON: index, totalMemory: 128 * GiB) }
        do { _ = try FitInput(configJSON: #"{"head_dim": 4e18}"#, indexJSON: index, totalMemory: 128 * GiB) } catch {
            #expect("\((error as? SousFailure)?.message ?? "")" == "config.json has an implausible head_dim: 4e+18 (a whole number 0…16777216 is expected)")
        }
        #expect(throws: FitInput.Implausible.self) { try FitInput(configJSON: "{}", indexJSON: #"{"metadata": {"total_size": -1}}"#, totalMemory: 0) }
        #expect(throws: FitInput.Implausible.self) { try FitInput(configJSON: "{}", indexJSON: #"{"metadata": {"total_size": 1e300}}"#, totalMemory: 0) }
        #expect(throws: FitInput.Implausible.self) { try FitInput(configJSON: #"{"ssm_state_size": "128"}"#, indexJSON: index, totalMemory: 0) }
        // Nulls are absent keys, as before.
        #expect(try FitInput(configJSON: #"{"head_dim": null, "num_hidden_layers": 2}"#, indexJSON: index, totalMemory: GiB).weightBytes == 1000)

        let e = engine(gmu: 0.5, maxLen: 4096)
        // Every size plausible alone, the Mamba state per sequence past Int.max.
        let mamba = FitInput(config: ["num_hidden_layers": 2, "hybrid_override_pattern": "M*", "mamba_num_heads": 1 << 24,
                                      "mamba_head_dim": 1 << 24, "ssm_state_size": 1 << 24], weightBytes: GiB, totalMemory: 32 * GiB)
        let r = Fit.compute(mamba, tp: 2, engine: e, profile: nil)
        #expect(r.verdict == .doesNotFit && r.messages == ["cannot size the checkpoint: the Mamba state per sequence overflows: the checkpoint's sizes are implausible"])
        // Hand-made inputs: an implausible size, negative weights, max_num_seqs at Int.max with a Mamba state.
        let huge = FitInput(config: ["num_hidden_layers": 4, "head_dim": Int.max], weightBytes: GiB, totalMemory: 32 * GiB)
        #expect(Fit.compute(huge, tp: 2, engine: e, profile: nil).messages == ["cannot size the checkpoint: config.json has an implausible head_dim: 9223372036854775807 (a whole number 0…16777216 is expected)"])
        let negative = FitInput(config: ["num_hidden_layers": 4], weightBytes: Int.min, totalMemory: 32 * GiB)
        #expect(Fit.compute(negative, tp: 2, engine: e, profile: nil).verdict == .doesNotFit)
        let seqs = engine(gmu: 0.5, maxLen: 4096, extra: [("max-num-seqs", .value("\(Int.max)"))])
        let state = FitInput(config: ["hybrid_override_pattern": "M*", "mamba_num_heads": 8, "mamba_head_dim": 64, "ssm_state_size": 128],
                             weightBytes: GiB, totalMemory: 32 * GiB)
        #expect(Fit.compute(state, tp: 2, engine: seqs, profile: nil).messages == ["cannot size the checkpoint: the Mamba and window state of 9223372036854775807 sequences overflows: the checkpoint's sizes are implausible"])
        // A memory fraction outside 0…1 set by code, and a total memory of Int.max.
        #expect(Fit.compute(state, tp: 2, engine: engine(gmu: 4, maxLen: 4096), profile: nil).verdict == .doesNotFit)
        #expect(Fit.compute(FitInput(config: [:], weightBytes: 0, totalMemory: Int.max), tp: 1, engine: engine(gmu: 0.99, maxLen: 1), profile: nil).verdict == .doesNotFit)
    }

    /// The shipped recipes on two Sparks, with the architecture and size of their checkpoints as the simulated
    /// hub carries them (figures from the model cards, not read from the hub: see SimHub).
    @Test(arguments: [
        ("nemotron-3-super-nvfp4", FitReport.Verdict.fits, 2048, 33_068_982),
        ("qwen3-coder-30b-a3b-fp8", .fitsWithWarnings, 49152, 1_829_146),
        ("qwen3-30b-a3b-thinking-fp8", .fitsWithWarnings, 49152, 1_829_146),
        ("gpt-oss-120b", .fitsWithWarnings, 18432, 3_929_460),
    ])
    func shippedRecipesOnTheSpark(_ name: String, _ verdict: FitReport.Verdict, _ kvPerToken: Int, _ tokens: Int) throws {
        let d = try Deployment.load(recipe: repoPath("recipes/\(name).yaml"), inventory: repoPath("inventory/two-sparks.yaml"))
        let repo = try #require(SimHub.repos.first { $0.model == d.recipe.model })
        let input = try FitInput(configJSON: repo.config, indexJSON: #"{"metadata": {"total_size": \#(repo.totalSize)}}"#, totalMemory: d.inventory.profileMemoryBytes)
        let r = Fit.compute(input, tp: 2, engine: d.engine, profile: d.inventory.profile)
        #expect(r.verdict == verdict, "\(r.messages)")
        #expect(r.kv_bytes_per_token_per_rank == kvPerToken)
        #expect(r.kv_tokens == tokens)
        #expect(Fit.clientMessage(r, clientContext: d.recipe.clientContext) == nil)
        if name.hasPrefix("nemotron") {
            // 74.5 GB of weights ÷ 2; 8 attention layers × 2 × 1 KV head × 128 × 1 byte (fp8); 40 Mamba layers (the
            // real hybrid_override_pattern) of SSM 128 × 64 × 128 × 4 B (the recipe's float32 SSM cache) + conv
            // 3 × (8192 + 2 × 8 × 128) × 2 B, ÷ 2 ranks = 85,114,880 B (81.2 MiB), × 8 sequences; the budget is 0.8 (the
            // Spark override) × 128 GiB = 109,951,162,777 B; KV = budget − 37,250,000,000 − 4 GiB − 8 × 85,114,880
            // = 67,725,276,441 B ÷ 2048 = 33,068,982 tokens.
            #expect(r.weights_per_rank == 37_250_000_000 && r.attention_layers == 8 && r.windowed_layers == 0)
            #expect(r.mamba_state_bytes_per_sequence == 40 * (128 * 64 * 128 * 4 + 3 * (8192 + 2 * 8 * 128) * 2) / 2)
            #expect(r.mamba_state_bytes_per_sequence == 85_114_880)
            #expect(r.budget == 109_951_162_777 && r.max_num_seqs == 8 && r.context_at_concurrency == 262144)
            #expect((109_951_162_777 - 37_250_000_000 - 4 * GiB - 8 * 85_114_880) / 2048 == 33_068_982)
        }
        if name == "gpt-oss-120b" {
            // 65,248,815,744 B ÷ 2; of 36 layers 18 full attention: 2 × 18 × (8 KV heads ÷ 2) × 64 × 2 B (bf16, kv auto)
            // = 18,432 B per token; 18 sliding-window layers hold 128 tokens: 18,432 × 128 = 2,359,296 B per sequence,
            // × 256 sequences; KV = 109,951,162,777 − 32,624,407,872 − 4 GiB − 256 × 2,359,296 = 72,427,786,633 B
            // ÷ 18,432 = 3,929,460 tokens.
            #expect(r.weights_per_rank == 32_624_407_872 && r.attention_layers == 18 && r.windowed_layers == 18)
            #expect(r.window_kv_bytes_per_sequence == 2_359_296 && r.max_num_seqs == 256)
            #expect((109_951_162_777 - 32_624_407_872 - 4 * GiB - 256 * 2_359_296) / 18_432 == 3_929_460)
        }
    }
}
