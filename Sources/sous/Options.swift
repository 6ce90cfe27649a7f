import ArgumentParser
import Foundation
import SousKit

/// --recipe and --inventory, shared by every command that works on a deployment.
struct DeploymentOptions: ParsableArguments {
    @Option(name: [.customShort("r"), .long], help: ArgumentHelp("Recipe file, or the name of one under recipes/.", valueName: "file|name"))
    var recipe: String

    @Option(name: [.customShort("i"), .long], help: ArgumentHelp("Inventory file (sous's format or an Ansible YAML inventory).", valueName: "file"))
    var inventory: String

    /// Resolves `--recipe nemotron-3-super-nvfp4` to recipes/nemotron-3-super-nvfp4.yaml when no such file exists.
    var recipePath: String {
        if FileManager.default.fileExists(atPath: recipe) || recipe.contains("/") { return recipe }
        return "recipes/\(recipe).yaml"
    }

    /// The deployment; one of several tensor-parallel groups only where the command handles groups
    /// (`allowGroups`: up, roll, render, plan, export): the rest refuse it (exit 2).
    func load(allowGroups: Bool = false) throws -> Deployment {
        let d = try Deployment.load(recipe: recipePath, inventory: inventory)
        Console.warnings(d.warnings)
        if d.isMultiGroup, !allowGroups {
            throw UsageError("\(d.inventory.file) forms \(d.groups.count) tensor-parallel groups of \(d.groupSize) nodes; this command runs on one group only so far",
                             hint: "`sous up`, `sous roll`, `sous render`, `sous plan` and `sous export lws` take every group; for the rest use an inventory of \(d.groupSize) nodes (one group)")
        }
        return d
    }

    /// Refuses a deployment whose serve flags vLLM is known to get wrong on its release (KnownBad), unless `force`.
    func refuseKnownBad(_ d: Deployment, force: Bool) throws {
        let argv = try Renderer(d).nodes().first?.serveArgv ?? []
        let bad = KnownBad.matches(serveArgv: argv, version: d.inventory.vllmVersion)
        guard !bad.isEmpty else { return }
        if force {
            for rule in bad { Console.warning("known-bad combination, going on because of --force: \(KnownBad.describe(rule))") }
            return
        }
        throw UsageError("\(recipePath) on \(d.inventory.image): " + bad.map(KnownBad.describe).joined(separator: "\n"),
                         hint: "change the recipe as the fix says, or pass --force to go on knowing it")
    }
}

/// A time option: `90s`, `30m`, `1h`, `500ms` or bare seconds; non-finite, zero and absurd values are refused (exit 2).
struct DurationArg: ExpressibleByArgument, Sendable {
    var text: String
    var duration: Duration

    init?(argument: String) {
        guard let d = try? Duration.parse(argument) else { return nil }
        text = argument
        duration = d
    }

    /// A default written in the source.
    init(_ text: String) { self.init(argument: text)! }

    var defaultValueDescription: String { text }
}
