import Testing
@testable import SSH

@Test func linksLibssh2() {
    #expect(libssh2Version.hasPrefix("1."))
}
