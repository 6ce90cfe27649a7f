import Foundation
import Testing
@testable import SousKit

@Suite struct InitTests {
    func facts(_ host: String, _ ifaces: String, roce: String = "") -> NodeFacts {
        let text = "spark-\(host)\n\u{1e}\nUbuntu 24.04\n\u{1e}\nNVIDIA GB10, [N/A]\n\u{1e}\n131072000\n127000000\n\u{1e}\nyes\n\u{1e}\nyes\n\u{1e}\n\(ifaces)\n\u{1e}\n\(roce)"
        return NodeFacts.parse(text, user: "spark", host: host, port: nil)
    }

    func iface(_ name: String, _ addr: String, up: Bool = true) -> String {
        #"{"ifname": "\#(name)", "operstate": "\#(up ? "UP" : "DOWN")", "mtu": 9000, "addr_info": [{"family": "inet", "local": "\#(addr)", "prefixlen": 24}]}"#
    }

    @Test func picksTheConnectXInterfaceSharedByBothNodes() {
        let roce = "rocep1s0f1 port 1 ==> enp1s0f1np1 (Up)\nroceP2p1s0f1 port 1 ==> enP2p1s0f1np1 (Down)"
        let a = facts("a", "[\(iface("eth0", "10.0.0.5")), \(iface("enp1s0f1np1", "192.168.100.10")), \(iface("enP2p1s0f1np1", "192.168.101.10", up: false))]", roce: roce)
        let b = facts("b", "[\(iface("eth0", "10.0.0.6")), \(iface("enp1s0f1np1", "192.168.100.11"))]", roce: roce)
        #expect(a.isGB10 && a.memTotalKB == 131072000 && a.docker && a.sudo)
        #expect(InitPlanner.choose([a, b]) == InitPlanner.Choice(interface: "enp1s0f1np1", addresses: ["192.168.100.10", "192.168.100.11"], ncclIbHca: "rocep1s0f1"))
    }

    @Test func differentSubnetsDoNotMatch() {
        let a = facts("a", "[\(iface("enp1s0f1np1", "192.168.100.10"))]")
        let b = facts("b", "[\(iface("enp1s0f1np1", "192.168.101.11"))]")
        #expect(InitPlanner.choose([a, b]) == nil)
    }
}
