import ArgumentParser
import Foundation
import SousKit

/// --recipe and --inventory, shared by every command that works on a deployment.
struct DeploymentOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Recipe file, or the name of one under recipes/.", valueName: "file|name"))
    var recipe: String

    @Option(name: .long, help: ArgumentHelp("Inventory file (sous's format or an Ansible YAML inventory).", valueName: "file"))
    var inventory: String

    /// Resolves `--recipe nemotron-3-super-nvfp4` to recipes/nemotron-3-super-nvfp4.yaml when no such file exists.
    var recipePath: String {
        if FileManager.default.fileExists(atPath: recipe) || recipe.contains("/") { return recipe }
        return "recipes/\(recipe).yaml"
    }

    func load() throws(ConfigErrors) -> Deployment {
        let d = try Deployment.load(recipe: recipePath, inventory: inventory)
        Console.warnings(d.warnings)
        return d
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
