/// A secret value (API key, token). Prints as [REDACTED] everywhere; reaches a node only inside a 0600 file.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public static let redacted = "[REDACTED]"
    private let value: String
    public init(_ value: String) { self.value = value }
    /// The value itself, for the one place that writes it into a 0600 file or an Authorization header.
    public func reveal() -> String { value }
    public var description: String { Self.redacted }
    public var debugDescription: String { Self.redacted }
}
