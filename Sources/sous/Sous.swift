import ArgumentParser
import SousKit

@main
struct Sous: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sous", abstract: "vLLM cluster tool")
}
