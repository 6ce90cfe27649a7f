import CLibSSH2

/// The libssh2 version this binary was linked against.
public var libssh2Version: String {
    String(cString: libssh2_version(0))
}
