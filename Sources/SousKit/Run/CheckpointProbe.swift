import Foundation

/// Reads what `fit` needs from a node: the checkpoint's config.json and safetensors index in the HF cache
/// (models--ORG--NAME/snapshots/<revision, or refs/main>) and the node's MemTotal.
public enum CheckpointProbe {
    public static func read(_ s: NodeSession, deployment d: Deployment) async throws -> FitInput? {
        let repo = "\(d.inventory.hfCache(on: s.node))/hub/models--\(d.recipe.model.replacingOccurrences(of: "/", with: "--"))"
        let rev = d.recipe.revision.map { try? ShellQuote.quote($0) } ?? nil
        let script = """
        r=\(rev ?? "\"$(cat \(repo)/refs/main 2>/dev/null)\"")
        d=\(repo)/snapshots/$r
        [ -n "$r" ] && [ -f "$d/config.json" ] && [ -f "$d/model.safetensors.index.json" ] || exit 3
        awk '/^MemTotal/ {print $2}' /proc/meminfo; printf '\\036\\n'; cat "$d/config.json"; printf '\\n\\036\\n'; cat "$d/model.safetensors.index.json"
        """
        let r = try await s.run(.shell(script, timeout: .seconds(30)))
        guard r.ok else { return nil }
        let parts = r.stdoutText.components(separatedBy: "\u{1e}\n")
        // MemTotal is in kB (awk would print bytes of 128 GB in floating point).
        guard parts.count == 3, let kB = Int(parts[0].trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return try FitInput(configJSON: parts[1], indexJSON: parts[2], totalMemory: kB * 1024)
    }
}
