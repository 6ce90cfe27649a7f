import Foundation

/// What sous reads from a checkpoint in a node's HF cache (models--ORG--NAME/snapshots/<revision, or refs/main>).
public struct CheckpointFacts: Sendable {
    public var fit: FitInput
    /// The method vLLM will detect: quantization_config.quant_method, compression_config, or ModelOpt's hf_quant_config.json.
    public var quantization: String?
    /// hf_quant_config.json's kv_cache_quant_algo (FP8 means an FP8 KV cache).
    public var kvCacheQuant: String?
}

public enum CheckpointProbe {
    public static func read(_ s: NodeSession, deployment d: Deployment) async throws -> CheckpointFacts? {
        let repo = try ShellQuote.quote("\(d.inventory.hfCache(on: s.node))/hub/models--\(d.recipe.model.replacingOccurrences(of: "/", with: "--"))")
        let rev = try d.recipe.revision.map { try ShellQuote.quote($0) }
        let script = """
        r=\(rev ?? "\"$(cat \(repo)/refs/main 2>/dev/null)\"")
        d=\(repo)/snapshots/$r
        [ -n "$r" ] && [ -f "$d/config.json" ] && [ -f "$d/model.safetensors.index.json" ] || exit 3
        awk '/^MemTotal/ {print $2}' /proc/meminfo; printf '\\036\\n'; cat "$d/config.json"; printf '\\n\\036\\n'
        cat "$d/model.safetensors.index.json"; printf '\\n\\036\\n'; cat "$d/hf_quant_config.json" 2>/dev/null; true
        """
        let r = try await s.run(.shell(script, timeout: .seconds(30)))
        guard r.ok else { return nil }
        let parts = r.stdoutText.components(separatedBy: "\u{1e}\n")
        // MemTotal is in kB (awk would print bytes of 128 GB in floating point).
        guard parts.count == 4, let kB = Int(parts[0].trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        let hfQuant = parts[3].trimmingCharacters(in: .whitespacesAndNewlines)
        let kv = (try? JSONSerialization.jsonObject(with: Data(hfQuant.utf8)) as? [String: Any])
            .flatMap { ($0["quantization"] as? [String: Any])?["kv_cache_quant_algo"] as? String }
        return CheckpointFacts(fit: try FitInput(configJSON: parts[1], indexJSON: parts[2], totalMemory: kB * 1024),
                               quantization: Audit.checkpointQuantization(configJSON: parts[1], hfQuantConfigJSON: hfQuant.isEmpty ? nil : hfQuant),
                               kvCacheQuant: kv)
    }
}
