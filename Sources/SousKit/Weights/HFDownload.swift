import Foundation

/// How sous runs the Hugging Face CLI's `download`, and how it reads what the CLI says, for the generations in use:
/// huggingface_hub 0.36.x (argparse CLI), 1.x and 2.x (Typer/Click CLI). Checked against the real CLIs of 0.36.2,
/// 1.33.0 and 2.4.0 (Tests/SousKitTests/HubCLITests.swift runs them; the texts below are theirs,
/// Tests/SousKitTests/Fixtures/hf/).
public enum HFDownload {
    /// The metadata step's files. They go as positional file names, two or more, which every generation turns into
    /// `snapshot_download(allow_patterns=[names])` (cli/download.py 0.36.2 :161-166, 2.4.0 :178-191), so a name
    /// the repository lacks (hf_quant_config.json) is no error. `--include` does not work across generations:
    /// 0.36.2 declares it `nargs="*"` with the default `store` action, so `--include a --include b` keeps only `b`
    /// (:75), while ≥ 1.0 takes one pattern per flag and reads `--include a b c` as include=[a] plus two file
    /// names, warns "Ignoring `--include` since filenames have been explicitly set." and skips `a`.
    public static let metadataFiles = ["config.json", "model.safetensors.index.json", "hf_quant_config.json"]

    /// `download MODEL [--revision R] [FILES…]` (the caller adds `--cache-dir`).
    public static func arguments(model: String, revision: String?, files: [String]) -> [String] {
        ["download", model] + (revision.map { ["--revision", $0] } ?? []) + files
    }

    /// No progress bars (the log is read by sous), and no update check: ≥ 1.x asks PyPI for a newer release at
    /// every start otherwise and prints a hint (cli/_cli_utils.py 2.4.0 `check_cli_update`, skipped when
    /// HF_HUB_DISABLE_UPDATE_CHECK is set, constants.py :237).
    public static let environment = ["HF_HUB_DISABLE_PROGRESS_BARS=1", "HF_HUB_DISABLE_UPDATE_CHECK=1"]

    public enum Failure: String, Sendable, CaseIterable {
        case gated, invalidToken, revisionNotFound, repoNotFound, noCLI, deprecatedCLI, other
    }

    /// The output without terminal colours (≥ 1.x colours its errors even into a file).
    public static func plain(_ output: String) -> String {
        output.replacingOccurrences(of: "\u{1b}\\[[0-9;]*m", with: "", options: .regularExpression)
    }

    /// What went wrong, from the CLI's output. Markers, most specific first:
    /// - 0.36.x ends on the exception, `huggingface_hub.errors.<Class>: <status> Client Error.` and the hub's
    ///   message (utils/_http.py 0.36.2 `hf_raise_for_status`): the class name is the marker.
    /// - ≥ 1.4 prints one `Error: ` line from cli/_errors.py CLI_ERROR_MAPPINGS: `Access denied. Model 'X'
    ///   requires approval.` (1.33.0: `Access denied. This repository requires approval.`), `Model 'X' not found.`,
    ///   `Revision not found in model 'X'.`; an unknown token is an HfHubHTTPError whose text carries the hub's
    ///   `Invalid credentials in Authorization header`.
    public static func failure(_ output: String) -> Failure {
        let text = plain(output)
        let errorLines = text.split(separator: "\n").filter { $0.hasPrefix("Error: ") || $0.hasPrefix("huggingface_hub.errors.") || $0.hasPrefix("huggingface_hub.utils._errors.") }
            .map(String.init)
        func said(_ marker: String) -> Bool { errorLines.contains { $0.contains(marker) } }
        if text.contains("Invalid credentials in Authorization header") || text.contains("Invalid user token") { return .invalidToken }
        if said("GatedRepoError") || said("Access denied.") && said("requires approval") { return .gated }
        if said("RevisionNotFoundError") || said("Error: Revision not found in ") { return .revisionNotFound }
        if said("RepositoryNotFoundError") || errorLines.contains(where: { $0.range(of: #"^Error: [A-Z][a-z]+ '[^']+' not found\.$"#, options: .regularExpression) != nil }) {
            return .repoNotFound
        }
        if text.contains("executable file not found") { return .noCLI }
        if text.contains("`huggingface-cli` is deprecated and no longer works") { return .deprecatedCLI }
        return .other
    }
}
