/// The sshd configuration of a simulated node and of a test node: key login only, no PAM, SFTP, room for
/// many parallel logins.
public enum SSHDConfig {
    public static func render(listen address: String, hostKey: String, pidFile: String, authorizedKeysDir: String, logLevel: String = "INFO") -> String {
        """
        ListenAddress \(address)
        Port 22
        HostKey \(hostKey)
        PidFile \(pidFile)
        AuthorizedKeysFile \(authorizedKeysDir)/%u
        StrictModes no
        UsePAM no
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        Subsystem sftp internal-sftp
        MaxStartups 100:30:200
        MaxSessions 100
        LogLevel \(logLevel)

        """
    }
}
