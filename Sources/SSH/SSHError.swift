import SousKit

/// A failure talking to one node, with what to do next.
public struct SSHError: SousFailure, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case unreachable, connectTimeout, hostKeyUnknown, hostKeyChanged, hostKeyRevoked, authentication, encryptedKey
        case sudoPassword, commandTimeout, sessionLost, uploadFailed
    }
    public var kind: Kind
    /// `name (user@host:port)`.
    public var node: String
    public var detail: String
    public var hint: String?

    public init(_ kind: Kind, node: String, _ detail: String, hint: String? = nil) {
        self.kind = kind
        self.node = node
        self.detail = detail
        self.hint = hint
    }

    public var message: String { "\(node): \(detail)" }
    public var description: String { message }
    public var exitCode: ExitStatus {
        switch kind {
        case .sudoPassword, .commandTimeout, .uploadFailed: return .checkFailed
        default: return .unreachable
        }
    }
}
