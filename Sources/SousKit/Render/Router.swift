import Foundation

/// vLLM's router (vllm-project/router 0.1.17, `vllm-router`) in front of a deployment's groups: its container, as
/// `sous render` prints it and `sous up` runs it. Pure: no I/O.
///
/// What the router does, read in its 0.1.17 source (the PyPI sdist; paths under src/) and checked against it running
/// (docs/research/vllm-router.md):
/// - it forwards the client's `Authorization` header on /v1/chat/completions, /v1/completions and /v1/models
///   (routers/header_utils.rs:51-64, applied at routers/http/router.rs:1965-1980 and 1215-1238), so the groups'
///   heads check the API key and the router holds none. Its own `--api-key` would sit on its command line and
///   reach only /v1/responses and unmatched paths (router.rs:3240-3242);
/// - health checks are `GET /health` without a key (core/worker.rs:407-421); the router's `/health` answers 503
///   while any worker fails them, `/readiness` 200 with one healthy;
/// - `POST /remove_worker?url=` takes a worker out at once without cutting its requests in flight, and
///   `POST /add_worker?url=` answers once the worker's /health passes, polling every
///   `--worker-startup-check-interval` (router.rs:2220-2373; routes server.rs:930-944);
/// - a refused connection, a timeout, 408/429/5xx are retried on another worker, 4xx is returned
///   (core/retry.rs:9-19, router.rs:2004-2016), and a stream cut mid-way is not (the client already had its 200).
public struct RouterCommand: Sendable {
    public static let container = "sous-router"
    public var spec: RouterSpec
    public var node: NodeSpec
    /// Every group's API, the first group first.
    public var workerURLs: [String]

    public init?(_ d: Deployment) {
        guard let spec = d.inventory.router, let node = d.inventory.nodes.first(where: { $0.name == spec.node }) else { return nil }
        self.spec = spec
        self.node = node
        workerURLs = d.groups.map { Endpoint.baseURL(host: $0.head.host, port: $0.port) }
    }

    /// The endpoint clients use.
    public var baseURL: String { Endpoint.baseURL(host: node.host, port: spec.port) }

    /// The router's own arguments, after the image (its entry point is `vllm-router`).
    public var routerArgv: [String] {
        ["--worker-urls"] + workerURLs + [
            "--host", "0.0.0.0", "--port", "\(spec.port)", "--policy", spec.policy,
            // The default checks each worker every 60 s; a group that dies should leave within seconds.
            "--health-check-interval-secs", "5",
            // `/add_worker` polls a worker's /health at this interval (default 30 s) until it passes.
            "--worker-startup-check-interval", "1",
        ]
    }

    /// `docker run`: host network (it reaches the heads as clients do), restarted by Docker after a reboot (it
    /// keeps no state: its worker list is this command's).
    public var dockerArgv: [String] {
        ["docker", "run", "-d", "--name", Self.container, "--network", "host", "--restart", "unless-stopped", spec.image] + routerArgv
    }
}

extension Deployment {
    /// One group as a deployment of its own: its nodes only, its head as the head, its port as the API port,
    /// rendered exactly as the whole deployment renders that group (`Renderer.rankFlags` is per group already).
    public func group(_ g: ServeGroup) -> Deployment {
        var d = self
        d.inventory.nodes = g.nodes.enumerated().map { i, n in
            var n = n
            n.role = i == 0 ? .head : .worker
            return n
        }
        d.inventory.port = g.port
        d.inventory.groups = nil
        d.inventory.router = nil
        return d
    }

    /// The router in front of the groups, when the inventory names one.
    public var router: RouterCommand? { RouterCommand(self) }
}
