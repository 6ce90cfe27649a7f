import Foundation
import SousKit
import SousSim

/// The modelled engine answering in process, as an HTTPProbe: what `SimAPI.handle` answers a URL's path.
public struct SimAPIProbe: HTTPProbe {
    public let api: SimAPI
    public init(api: SimAPI) { self.api = api }

    public static func answer(_ r: SimAPI.Response) -> HTTPResponse {
        HTTPResponse(status: r.status, body: Data(r.body.utf8), contentType: r.contentType)
    }

    func handle(_ method: String, _ url: String, _ bearer: Secret?, _ body: Data) -> HTTPResponse {
        Self.answer(api.handle(method: method, path: URLComponents(string: url)?.path ?? url, authorization: bearer.map { "Bearer \($0.reveal())" }, body: body))
    }

    public func get(_ url: String, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse { handle("GET", url, bearer, Data()) }
    public func post(_ url: String, json: Data, bearer: Secret?, timeout: Duration) async throws -> HTTPResponse { handle("POST", url, bearer, json) }
}
