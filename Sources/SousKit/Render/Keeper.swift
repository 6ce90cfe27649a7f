import Foundation

/// How a tensor-parallel group comes back after a reboot without a person: every rank's container has Docker's
/// `--restart unless-stopped`, and runs `vllm serve` under this keeper (Python's standard library, which every vLLM
/// image has). A restart policy alone is not enough, because in vLLM 0.28 the ranks do not notice each other going
/// away (docs/research/vllm-rank-failure.md; MACHINE.md measured the same on 0.24):
/// - a headless rank whose rank 0 died never exits (its worker waits on rank 0's queue with no timeout,
///   v1/executor/multiproc_executor.py:1026-1032), and a new rank 0 next to it waits for a join that never comes;
/// - rank 0 whose peer died keeps /health at 200 while idle (serve/instrumentator/health.py:22-33) and fails only
///   on the next request, then exits (entrypoints/launcher.py:170-192), or after 300 s when the peer lost power
///   (VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS, multiproc_executor.py:337-348).
/// So the group must start over together, and the keeper supplies what vLLM does not:
/// - on a worker, it watches rank 0's /health; once rank 0 has been healthy, three failed checks 5 s apart
///   (rank 0 restarting or gone) end this rank, and Docker starts it again to join the new rank 0;
/// - on rank 0, every 30 s while /health is 200 it sends a one-token completion (the key from the container's
///   env); vLLM's own failure on it makes the server exit (Docker restarts it), and two probes without an answer in
///   60 s (a peer that lost power) end the rank.
/// Both ends then restart, in either order: a worker retries the rendezvous until rank 0 listens.
/// `sous up` and `roll` remove the containers first, keeper and all, so it never acts during their restarts.
public enum Keeper {
    /// The keeper, passed to `python3 -c`; its arguments: ROLE (head PORT MODEL | worker HEALTH-URL), `--`, the command.
    public static let script = """
    import json, os, signal, subprocess, sys, time, urllib.request
    role, i = sys.argv[1], sys.argv.index("--")
    opts, proc = sys.argv[2:i], subprocess.Popen(sys.argv[i + 1:])
    for s in (signal.SIGTERM, signal.SIGINT): signal.signal(s, lambda n, f: proc.send_signal(n))
    def status(url, body=None, timeout=10):
        r = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        if body is not None and os.environ.get("VLLM_API_KEY"): r.add_header("Authorization", "Bearer " + os.environ["VLLM_API_KEY"])
        try:
            with urllib.request.urlopen(r, timeout=timeout) as a: return a.status
        except urllib.error.HTTPError as e: return e.code
        except Exception: return 0
    if role == "worker": every, limit = 5, 3
    else:
        every, limit, base = 30, 2, "http://127.0.0.1:" + opts[0]
        ping = json.dumps({"model": opts[1], "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}).encode()
    seen, bad = False, 0
    while proc.poll() is None:
        for _ in range(every):
            if proc.poll() is None: time.sleep(1)
        if proc.poll() is not None: break
        if role == "worker": ok = status(opts[0]) == 200
        elif status(base + "/health") != 200: continue
        else: ok = status(base + "/v1/chat/completions", ping, 60) == 200
        seen, bad = seen or ok, 0 if ok else bad + (1 if seen else 0)
        if bad >= limit:
            print("sous-keeper: " + ("rank 0 stopped answering /health" if role == "worker" else "no completion within 60 s")
                  + ": ending this rank so that Docker starts it again and the group starts over together", file=sys.stderr, flush=True)
            proc.terminate()
            try: proc.wait(30)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait()
            sys.exit(75)
    sys.exit(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)
    """

    /// What follows the image in `docker run` for a rank of a multi-node group: the keeper, then `vllm` and `serve`.
    public static func containerArgs(rank: Int, group: ServeGroup, servedModel: String, serve: [String]) -> [String] {
        let role = rank == 0 ? ["head", "\(group.port)", servedModel]
            : ["worker", Endpoint.url(host: group.head.interconnectIP, port: group.port, path: "/health")]
        return ["-c", script] + role + ["--", "vllm"] + serve
    }

    /// The `serve …` arguments inside a container's arguments, with or without the keeper before them.
    public static func serveArgs(_ containerArgs: [String]) -> (serve: [String], kept: Bool) {
        guard containerArgs.first == "-c", let dash = containerArgs.firstIndex(of: "--"), containerArgs.indices.contains(dash + 1),
              containerArgs[dash + 1] == "vllm" else { return (containerArgs, false) }
        return (Array(containerArgs[(dash + 2)...]), true)
    }
}
