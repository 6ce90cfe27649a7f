import Testing
@testable import SousKit

@Suite struct SSHConfigTests {
    let config = SSHConfig(text: """
    # comment
    Host spark-*  !spark-lab
        HostName %h.cluster.internal
        User spark
        Port 2222
        IdentityFile ~/.ssh/spark_ed25519
        ProxyJump bastion
        ServerAliveInterval 30

    Host spark-a
        User override-ignored
        IdentityFile ~/.ssh/second

    Host *
        IdentityFile ~/.ssh/id_ed25519
        User fallback
    Match host foo
        User x
    """, file: "/home/u/.ssh/config")

    @Test func firstValueWinsAndIdentityFilesAccumulate() {
        let r = config.resolve("spark-a")
        #expect(r.hostName == "spark-a.cluster.internal")
        #expect(r.user == "spark")
        #expect(r.port == 2222)
        #expect(r.identityFiles == ["~/.ssh/spark_ed25519", "~/.ssh/second", "~/.ssh/id_ed25519"])
    }

    @Test func unsupportedOptionsAreReportedWithTheirLine() {
        let r = config.resolve("spark-b")
        #expect(r.unsupported == ["/home/u/.ssh/config:17: Match blocks are not supported by sous (ignored)",
                                  "/home/u/.ssh/config:7: ProxyJump bastion is not supported by sous (ignored)"])
    }

    @Test func negatedPatternExcludes() {
        let r = config.resolve("spark-lab")
        #expect(r.hostName == nil)
        #expect(r.user == "fallback")
        #expect(r.port == nil)
    }

    @Test func globs() {
        #expect(SSHConfig.glob("spark-?", "spark-a"))
        #expect(!SSHConfig.glob("spark-?", "spark-ab"))
        #expect(SSHConfig.glob("*.lan", "a.b.lan"))
        #expect(SSHConfig.glob("*", ""))
    }
}
