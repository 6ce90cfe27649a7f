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
/// - on a worker, every 5 s: once rank 0 has been healthy, three failed /health checks in a row (rank 0 restarting
///   or gone) end this rank; and its connection to rank 0's rendezvous port closed by rank 0 (CLOSE_WAIT in
///   /proc/net/tcp), or gone after it was up, for two checks (rank 0's process ended: a new one next to this rank
///   would wait for ever) ends it too, also when rank 0 went away before this rank ever saw it healthy. Docker then
///   starts it again to join the new rank 0. A rank 0 that lost power sends no FIN; then only /health tells;
/// - on rank 0, every 30 s while /health is 200 it sends a one-token completion (the key from the container's
///   env); vLLM's own failure on it makes the server exit (Docker restarts it), and two probes without an answer in
///   60 s (a peer that lost power) end the rank.
/// Both ends then restart, in either order: a worker retries the rendezvous until rank 0 listens.
/// `sous up` and `roll` remove the containers first, keeper and all, so it never acts during their restarts.
public enum Keeper {
    /// The keeper, passed to `python3 -c`; its arguments: ROLE (head PORT MODEL | worker HEALTH-URL MASTER-IP MASTER-PORT),
    /// `--`, the command.
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
    def link():
        import ipaddress
        ip = ipaddress.ip_address(opts[1])
        want = (ip.packed[::-1].hex() if ip.version == 4 else "".join(ip.packed[i:i + 4][::-1].hex() for i in range(0, 16, 4))).upper() + ":%04X" % int(opts[2])
        states = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try: states |= {f[3] for f in (l.split() for l in open(table).read().splitlines()[1:]) if f[2] == want}
            except OSError: pass
        return "up" if "01" in states else "closed" if "08" in states else "none"
    if role == "worker": every, limit = 5, 3
    else:
        every, limit, base = 30, 2, "http://127.0.0.1:" + opts[0]
        ping = json.dumps({"model": opts[1], "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}).encode()
    seen, bad, linked, lost = False, 0, False, 0
    while proc.poll() is None:
        for _ in range(every):
            if proc.poll() is None: time.sleep(1)
        if proc.poll() is not None: break
        if role == "worker":
            ok, state = status(opts[0]) == 200, link()
            linked, lost = linked or state == "up", 0 if state == "up" else lost + (1 if linked or state == "closed" else 0)
        elif status(base + "/health") != 200: continue
        else: ok = status(base + "/v1/chat/completions", ping, 60) == 200
        seen, bad = seen or ok, 0 if ok else bad + (1 if seen else 0)
        if bad >= limit or lost >= 2:
            print("sous-keeper: " + ("rank 0 stopped answering /health" if bad >= limit and role == "worker" else "rank 0's rendezvous connection is gone" if lost >= 2 else "no completion within 60 s")
                  + ": ending this rank so that Docker starts it again and the group starts over together", file=sys.stderr, flush=True)
            proc.terminate()
            try: proc.wait(30)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait()
            sys.exit(75)
    sys.exit(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)
    """

    /// What follows the image in `docker run` for a rank of a multi-node group: the keeper, then `vllm` and `serve`.
    public static func containerArgs(rank: Int, group: ServeGroup, masterPort: Int, servedModel: String, serve: [String]) -> [String] {
        let role = rank == 0 ? ["head", "\(group.port)", servedModel]
            : ["worker", Endpoint.url(host: group.head.interconnectIP, port: group.port, path: "/health"), group.head.interconnectIP, "\(masterPort)"]
        return ["-c", script] + role + ["--", "vllm"] + serve
    }

    /// The `serve …` arguments inside a container's arguments, with or without the keeper before them.
    public static func serveArgs(_ containerArgs: [String]) -> (serve: [String], kept: Bool) {
        guard containerArgs.first == "-c", let dash = containerArgs.firstIndex(of: "--"), containerArgs.indices.contains(dash + 1),
              containerArgs[dash + 1] == "vllm" else { return (containerArgs, false) }
        return (Array(containerArgs[(dash + 2)...]), true)
    }
}
