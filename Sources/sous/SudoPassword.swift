import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

/// `--ask-sudo-password`: the password read once per run from the controlling terminal with echo off. Kept in
/// memory only; without a terminal the run stops (exit 2) before any node is touched.
enum SudoPassword {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: Secret?

    static func read() -> Secret {
        lock.lock(); defer { lock.unlock() }
        if let cached { return cached }
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY)
        guard fd >= 0 else {
            Console.error("--ask-sudo-password needs a terminal to read the password from (/dev/tty: \(String(cString: strerror(errno))))",
                          hint: "run sous from a terminal, or allow passwordless sudo on the nodes")
            exit(ExitStatus.badInput.rawValue)
        }
        defer { close(fd) }
        var saved = termios()
        let isTerminal = tcgetattr(fd, &saved) == 0
        if isTerminal {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(fd, TCSAFLUSH, &quiet)
        }
        let prompt = "sudo password for the nodes: "
        _ = prompt.withCString { Glibc.write(fd, $0, strlen($0)) }
        var bytes: [UInt8] = []
        var c: UInt8 = 0
        while Glibc.read(fd, &c, 1) == 1, c != 10, bytes.count < 4096 { bytes.append(c) }
        if isTerminal { tcsetattr(fd, TCSAFLUSH, &saved) }
        _ = "\n".withCString { Glibc.write(fd, $0, 1) }
        let password = Secret(String(decoding: bytes, as: UTF8.self))
        cached = password
        return password
    }
}
