import Foundation
@testable import SousKit
@_exported import SousTestSupport

/// Runs a program with arguments (no shell), returning stdout, stderr and the exit status.
@discardableResult
func run(_ program: String, _ args: [String], stdin: Data? = nil, cwd: String? = nil) throws -> (out: Data, err: String, status: Int32) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    if let stdin { inp.fileHandleForWriting.write(stdin) }
    try inp.fileHandleForWriting.close()
    // Drain both pipes concurrently so a large output on one cannot block the other.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return (outData, String(decoding: errData, as: UTF8.self), p.terminationStatus)
}

/// Parses a recipe from text, for validation tests.
func recipeIssues(_ yaml: String) -> [ConfigIssue] {
    do { return try RecipeReader.parse(yaml, file: "r.yaml").1 } catch { return error.issues }
}

func inventoryIssues(_ yaml: String) -> [ConfigIssue] {
    do { return try InventoryReader.parse(yaml, file: "i.yaml").1 } catch { return error.issues }
}
