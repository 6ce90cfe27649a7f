import CLibSSH2
import Foundation
import SousKit
#if canImport(Glibc)
import Glibc
#endif

extension Connection {
    /// Runs one command on a new channel: stdin written, stdout and stderr drained together (neither can
    /// fill its window and stall the other), exit status or signal read, and the deadline enforced. The
    /// remote side is wrapped in `timeout` so a command that runs too long is also ended on the node.
    ///
    /// For streams: `input` is pulled for stdin chunk by chunk until it returns nil (instead of command.stdin),
    /// and `output` receives stdout as it arrives (instead of collecting it).
    func exec(_ command: RemoteCommand, input: (() throws -> Data?)? = nil, output: ((Data) throws -> Void)? = nil) throws -> CommandResult {
        guard let session = sessionHandle else { throw fail(.sessionLost, "not connected") }
        let line: String
        let password = command.sudo ? target.sudoPassword : nil
        do { line = try command.commandLine(sudoPasswordOnStdin: password != nil) } catch { throw error }
        let clock = ContinuousClock()
        let start = clock.now
        // The local deadline allows for the remote `timeout` and its KILL grace before giving up on the channel.
        let deadline = command.timeout.map { start + $0 + .seconds(7) }

        let channel: OpaquePointer = try waitPointer(deadline, what: "opening a channel") { sous_channel_open_session(session) }
        defer { libssh2_channel_free(channel) }
        try wait(deadline, what: "starting the command") { sous_channel_exec(channel, line) }

        func write(_ stdin: Data) throws {
            try stdin.withUnsafeBytes { raw in
                var offset = 0
                let base = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
                while offset < stdin.count {
                    let n = sous_channel_write(channel, base + offset, stdin.count - offset)
                    if n == Int(LIBSSH2_ERROR_EAGAIN) {
                        try waitSocket(deadline, what: "writing input")
                        continue
                    }
                    if n < 0 { throw fail(.sessionLost, "writing the command's input failed: \(lastError)") }
                    offset += n
                }
            }
        }
        if let password { try write(RemoteCommand.withSudoPassword(password, nil)) }
        if let input {
            while let chunk = try input() { if !chunk.isEmpty { try write(chunk) } }
        } else if let stdin = command.stdin, !stdin.isEmpty {
            try write(stdin)
        }
        try wait(deadline, what: "closing the command's input") { sous_channel_close_stdin(channel) }

        var out = Data(), err = Data()
        var buffer = [CChar](repeating: 0, count: 64 * 1024)
        while true {
            var progressed = false
            for (isErr) in [false, true] {
                while true {
                    let n = buffer.withUnsafeMutableBufferPointer { p in
                        isErr ? sous_channel_read_stderr(channel, p.baseAddress, p.count) : sous_channel_read(channel, p.baseAddress, p.count)
                    }
                    if n > 0 {
                        try buffer.withUnsafeBufferPointer { p in
                            try p.baseAddress!.withMemoryRebound(to: UInt8.self, capacity: n) { bytes in
                                if isErr { err.append(bytes, count: n) } else if let output { try output(Data(bytes: bytes, count: n)) } else { out.append(bytes, count: n) }
                            }
                        }
                        progressed = true
                        continue
                    }
                    if n == Int(LIBSSH2_ERROR_EAGAIN) || n == 0 { break }
                    throw fail(.sessionLost, "reading the command's output failed: \(lastError)")
                }
            }
            if libssh2_channel_eof(channel) != 0 { break }
            if !progressed {
                if let stop = command.stopsOn {
                    // Freeing the channel (the defer above) closes it; the node finishes or fails the command alone.
                    try stop.check(command.argv.first ?? "command", node: target.name,
                                   state: "stopped waiting for `\(command.argv.prefix(3).joined(separator: " "))`, which changes nothing half-way; nothing else was changed")
                }
                do { try waitSocket(deadline, what: "`\(command.argv.joined(separator: " "))`", atMost: command.stopsOn == nil ? nil : 200) } catch let e as SSHError where e.kind == .commandTimeout {
                    throw fail(.commandTimeout, "`\(command.argv.joined(separator: " "))` ran longer than \(command.timeout!) and was ended")
                }
            }
        }
        try wait(deadline, what: "closing the channel") { libssh2_channel_close(channel) }
        try wait(deadline, what: "waiting for the exit status") { libssh2_channel_wait_closed(channel) }

        var status: Int32? = libssh2_channel_get_exit_status(channel)
        var signalName: String?
        var sig: UnsafeMutablePointer<CChar>?
        var sigLen = 0
        if libssh2_channel_get_exit_signal(channel, &sig, &sigLen, nil, nil, nil, nil) == 0, let sig, sigLen > 0 {
            signalName = String(cString: sig)
            libssh2_free(session, sig)
            status = nil
        }
        // `timeout` exits 124 (TERM) or 137 (KILL) when it ended the command.
        if command.timeout != nil, status == 124 || status == 137, clock.now - start >= command.timeout! {
            throw fail(.commandTimeout, "`\(command.argv.joined(separator: " "))` ran longer than \(command.timeout!) and was ended on the node")
        }
        if command.sudo, status == 1, String(decoding: err, as: UTF8.self).contains("sudo: a password is required")
            || String(decoding: err, as: UTF8.self).contains("sudo: a terminal is required") {
            throw fail(.sudoPassword, password != nil ? "sudo refused the password for \(target.user)" : "sudo wants a password for \(target.user)",
                       hint: password != nil ? "check the password, and that sudo keeps a ticket (timestamp_timeout above 0 in sudoers)"
                        : "run again with --ask-sudo-password, or allow passwordless sudo for \(target.user) on the node (a line `\(target.user) ALL=(ALL) NOPASSWD:ALL` in /etc/sudoers.d/sous)")
        }
        return CommandResult(stdout: out, stderr: err, exitStatus: status, exitSignal: signalName, duration: clock.now - start)
    }

    /// Writes a file atomically: SFTP to a temporary name beside the target (created 0600, then given `mode`),
    /// then `mv -f` (rename(2)) over the target. With `sudo`, the temporary file goes to the login user's
    /// home and `sudo install` places it beside the target as root before the rename.
    func upload(_ data: Data, to path: String, mode: Int, sudo: Bool) throws {
        guard let session = sessionHandle else { throw fail(.sessionLost, "not connected") }
        guard path.hasPrefix("/") else { throw fail(.uploadFailed, "upload target must be an absolute path: \(path)") }
        let deadline = ContinuousClock.now + .seconds(60)
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let dir = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temp = sudo ? ".sous-upload-\(suffix)" : "\(dir)/.\(name).sous-\(suffix)"

        let sftp: OpaquePointer = try waitPointer(deadline, what: "starting SFTP") { libssh2_sftp_init(session) }
        defer { libssh2_sftp_shutdown(sftp) }
        let handle: OpaquePointer = try waitPointer(deadline, what: "creating \(temp)") {
            sous_sftp_open(sftp, temp, UInt(sous_sftp_open_flags_create()), 0o600)
        }
        var handleOpen = true
        do {
            var offset = 0
            try data.withUnsafeBytes { raw in
                while offset < data.count {
                    let n = libssh2_sftp_write(handle, raw.baseAddress!.assumingMemoryBound(to: CChar.self) + offset, data.count - offset)
                    if n == Int(LIBSSH2_ERROR_EAGAIN) { try waitSocket(deadline, what: "uploading \(path)"); continue }
                    if n < 0 { throw fail(.uploadFailed, "writing \(temp) failed: \(lastError)") }
                    offset += n
                }
            }
            handleOpen = false
            try wait(deadline, what: "closing \(temp)") { libssh2_sftp_close_handle(handle) }
            try wait(deadline, what: "setting the mode of \(temp)") { sous_sftp_setstat_mode(sftp, temp, UInt(mode)) }
        } catch {
            // Best effort, on a deadline of its own (the upload's may be what ran out): no partial file stays behind.
            let cleanup = ContinuousClock.now + .seconds(5)
            if handleOpen { _ = try? wait(cleanup, what: "closing \(temp)") { libssh2_sftp_close_handle(handle) } }
            _ = try? wait(cleanup, what: "removing \(temp)") { sous_sftp_unlink(sftp, temp) }
            throw error
        }

        let octal = String(mode, radix: 8)
        let place: RemoteCommand
        if sudo {
            let staged = "\(dir)/.\(name).sous-\(suffix)"
            place = RemoteCommand(["sh", "-c", "mkdir -p -- \"$(dirname -- \"$3\")\" && install -m \(octal) -o root -g root -T \"$1\" \"$2\" && mv -f -- \"$2\" \"$3\"; rc=$?; rm -f -- \"$1\" \"$2\"; exit $rc",
                                   "sous-upload", temp, staged, path], timeout: .seconds(30), sudo: true)
        } else {
            place = RemoteCommand(["mv", "-f", "--", temp, path], timeout: .seconds(30))
        }
        let result = try exec(place)
        if !result.ok {
            _ = try? exec(RemoteCommand(["rm", "-f", "--", temp], timeout: .seconds(30)))
            throw fail(.uploadFailed, "could not put \(path) in place: \(result.tail())")
        }
    }
}
