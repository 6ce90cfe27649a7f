# sous render: recipe gpt-oss-120b on cluster four-sparks — vllm/vllm-openai:v0.24.0 (vLLM 0.24.0), mp launcher, tp 2, 2 groups of 2 nodes

# ══ group pair-ab: spark-a (head), spark-b · API http://spark-a.local:8000 · rendezvous 192.168.100.10:29501

# ── spark-a · head · rank 0 · spark@spark-a.local
sudo install -d -m 0755 -o spark /var/lib/sous
install -m 0600 /dev/null /var/lib/sous/vllm.env
printf '%s\n' \
  VLLM_HOST_IP=192.168.100.10 \
  NCCL_SOCKET_IFNAME=enp1s0f1np1 \
  GLOO_SOCKET_IFNAME=enp1s0f1np1 \
  TP_SOCKET_IFNAME=enp1s0f1np1 \
  UCX_NET_DEVICES=enp1s0f1np1 \
  NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1 \
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
  HF_HUB_OFFLINE=1 \
  VLLM_ENGINE_READY_TIMEOUT_S=1860 >> /var/lib/sous/vllm.env
printf '%s\n' "VLLM_API_KEY=${VLLM_API_KEY:?export VLLM_API_KEY first}" >> /var/lib/sous/vllm.env   # [REDACTED]: export VLLM_API_KEY first
docker run -d --name sous-vllm \
  --gpus all \
  --network host \
  --ipc host \
  --shm-size 10g \
  --device /dev/infiniband \
  --cap-add IPC_LOCK \
  --ulimit memlock=-1 \
  -v /home/spark/.cache/huggingface:/root/.cache/huggingface \
  --env-file /var/lib/sous/vllm.env \
  --label sous.cluster=four-sparks \
  --label sous.recipe=gpt-oss-120b \
  --label sous.rank=0 \
  --label sous.group=pair-ab \
  --restart unless-stopped \
  --entrypoint python3 \
  vllm/vllm-openai:v0.24.0 \
  -c 'import json, os, signal, subprocess, sys, time, urllib.request
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
        print("sous-keeper: " + ("rank 0 stopped answering /health" if bad >= limit and role == "worker" else "rank 0'\''s rendezvous connection is gone" if lost >= 2 else "no completion within 60 s")
              + ": ending this rank so that Docker starts it again and the group starts over together", file=sys.stderr, flush=True)
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        sys.exit(75)
sys.exit(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)' \
  head 8000 openai/gpt-oss-120b \
  -- vllm \
  serve openai/gpt-oss-120b \
  --served-model-name openai/gpt-oss-120b \
  --tensor-parallel-size 2 \
  --tool-call-parser openai \
  --enable-auto-tool-choice \
  --reasoning-parser openai_gptoss \
  --kv-cache-dtype auto \
  --max-model-len 131072 \
  --gpu-memory-utilization 0.8 \
  --enable-chunked-prefill \
  --override-generation-config '{"temperature":1.0,"top_p":1.0}' \
  --nnodes 2 \
  --node-rank 0 \
  --master-addr 192.168.100.10 \
  --master-port 29501 \
  --host 0.0.0.0 \
  --port 8000

# ── spark-b · worker · rank 1 · spark@spark-b.local
sudo install -d -m 0755 -o spark /var/lib/sous
install -m 0600 /dev/null /var/lib/sous/vllm.env
printf '%s\n' \
  VLLM_HOST_IP=192.168.100.11 \
  NCCL_SOCKET_IFNAME=enp1s0f1np1 \
  GLOO_SOCKET_IFNAME=enp1s0f1np1 \
  TP_SOCKET_IFNAME=enp1s0f1np1 \
  UCX_NET_DEVICES=enp1s0f1np1 \
  NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1 \
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
  HF_HUB_OFFLINE=1 \
  VLLM_ENGINE_READY_TIMEOUT_S=1860 >> /var/lib/sous/vllm.env
docker run -d --name sous-vllm \
  --gpus all \
  --network host \
  --ipc host \
  --shm-size 10g \
  --device /dev/infiniband \
  --cap-add IPC_LOCK \
  --ulimit memlock=-1 \
  -v /home/spark/.cache/huggingface:/root/.cache/huggingface \
  --env-file /var/lib/sous/vllm.env \
  --label sous.cluster=four-sparks \
  --label sous.recipe=gpt-oss-120b \
  --label sous.rank=1 \
  --label sous.group=pair-ab \
  --restart unless-stopped \
  --entrypoint python3 \
  vllm/vllm-openai:v0.24.0 \
  -c 'import json, os, signal, subprocess, sys, time, urllib.request
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
        print("sous-keeper: " + ("rank 0 stopped answering /health" if bad >= limit and role == "worker" else "rank 0'\''s rendezvous connection is gone" if lost >= 2 else "no completion within 60 s")
              + ": ending this rank so that Docker starts it again and the group starts over together", file=sys.stderr, flush=True)
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        sys.exit(75)
sys.exit(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)' \
  worker http://192.168.100.10:8000/health 192.168.100.10 29501 \
  -- vllm \
  serve openai/gpt-oss-120b \
  --served-model-name openai/gpt-oss-120b \
  --tensor-parallel-size 2 \
  --tool-call-parser openai \
  --enable-auto-tool-choice \
  --reasoning-parser openai_gptoss \
  --kv-cache-dtype auto \
  --max-model-len 131072 \
  --gpu-memory-utilization 0.8 \
  --enable-chunked-prefill \
  --override-generation-config '{"temperature":1.0,"top_p":1.0}' \
  --nnodes 2 \
  --node-rank 1 \
  --master-addr 192.168.100.10 \
  --master-port 29501 \
  --headless

# ══ group pair-cd: spark-c (head), spark-d · API http://spark-c.local:8000 · rendezvous 192.168.101.10:29501

# ── spark-c · head · rank 0 · spark@spark-c.local
sudo install -d -m 0755 -o spark /var/lib/sous
install -m 0600 /dev/null /var/lib/sous/vllm.env
printf '%s\n' \
  VLLM_HOST_IP=192.168.101.10 \
  NCCL_SOCKET_IFNAME=enp1s0f1np1 \
  GLOO_SOCKET_IFNAME=enp1s0f1np1 \
  TP_SOCKET_IFNAME=enp1s0f1np1 \
  UCX_NET_DEVICES=enp1s0f1np1 \
  NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1 \
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
  HF_HUB_OFFLINE=1 \
  VLLM_ENGINE_READY_TIMEOUT_S=1860 >> /var/lib/sous/vllm.env
printf '%s\n' "VLLM_API_KEY=${VLLM_API_KEY:?export VLLM_API_KEY first}" >> /var/lib/sous/vllm.env   # [REDACTED]: export VLLM_API_KEY first
docker run -d --name sous-vllm \
  --gpus all \
  --network host \
  --ipc host \
  --shm-size 10g \
  --device /dev/infiniband \
  --cap-add IPC_LOCK \
  --ulimit memlock=-1 \
  -v /home/spark/.cache/huggingface:/root/.cache/huggingface \
  --env-file /var/lib/sous/vllm.env \
  --label sous.cluster=four-sparks \
  --label sous.recipe=gpt-oss-120b \
  --label sous.rank=0 \
  --label sous.group=pair-cd \
  --restart unless-stopped \
  --entrypoint python3 \
  vllm/vllm-openai:v0.24.0 \
  -c 'import json, os, signal, subprocess, sys, time, urllib.request
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
        print("sous-keeper: " + ("rank 0 stopped answering /health" if bad >= limit and role == "worker" else "rank 0'\''s rendezvous connection is gone" if lost >= 2 else "no completion within 60 s")
              + ": ending this rank so that Docker starts it again and the group starts over together", file=sys.stderr, flush=True)
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        sys.exit(75)
sys.exit(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)' \
  head 8000 openai/gpt-oss-120b \
  -- vllm \
  serve openai/gpt-oss-120b \
  --served-model-name openai/gpt-oss-120b \
  --tensor-parallel-size 2 \
  --tool-call-parser openai \
  --enable-auto-tool-choice \
  --reasoning-parser openai_gptoss \
  --kv-cache-dtype auto \
  --max-model-len 131072 \
  --gpu-memory-utilization 0.8 \
  --enable-chunked-prefill \
  --override-generation-config '{"temperature":1.0,"top_p":1.0}' \
  --nnodes 2 \
  --node-rank 0 \
  --master-addr 192.168.101.10 \
  --master-port 29501 \
  --host 0.0.0.0 \
  --port 8000

# ── spark-d · worker · rank 1 · spark@spark-d.local
sudo install -d -m 0755 -o spark /var/lib/sous
install -m 0600 /dev/null /var/lib/sous/vllm.env
printf '%s\n' \
  VLLM_HOST_IP=192.168.101.11 \
  NCCL_SOCKET_IFNAME=enp1s0f1np1 \
  GLOO_SOCKET_IFNAME=enp1s0f1np1 \
  TP_SOCKET_IFNAME=enp1s0f1np1 \
  UCX_NET_DEVICES=enp1s0f1np1 \
  NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1 \
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
  HF_HUB_OFFLINE=1 \
  VLLM_ENGINE_READY_TIMEOUT_S=1860 >> /var/lib/sous/vllm.env
docker run -d --name sous-vllm \
  --gpus all \
  --network host \
  --ipc host \
  --shm-size 10g \
  --device /dev/infiniband \
  --cap-add IPC_LOCK \
  --ulimit memlock=-1 \
  -v /home/spark/.cache/huggingface:/root/.cache/huggingface \
  --env-file /var/lib/sous/vllm.env \
  --label sous.cluster=four-sparks \
  --label sous.recipe=gpt-oss-120b \
  --label sous.rank=1 \
  --label sous.group=pair-cd \
  --restart unless-stopped \
  --entrypoint python3 \
  vllm/vllm-openai:v0.24.0 \
  -c 'import json, os, signal, subprocess, sys, time, urllib.request
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
        print("sous-keeper: " + ("rank 0 stopped answering /health" if bad >= limit and role == "worker" else "rank 0'\''s rendezvous connection is gone" if lost >= 2 else "no completion within 60 s")
              + ": ending this rank so that Docker starts it again and the group starts over together", file=sys.stderr, flush=True)
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        sys.exit(75)
sys.exit(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode)' \
  worker http://192.168.101.10:8000/health 192.168.101.10 29501 \
  -- vllm \
  serve openai/gpt-oss-120b \
  --served-model-name openai/gpt-oss-120b \
  --tensor-parallel-size 2 \
  --tool-call-parser openai \
  --enable-auto-tool-choice \
  --reasoning-parser openai_gptoss \
  --kv-cache-dtype auto \
  --max-model-len 131072 \
  --gpu-memory-utilization 0.8 \
  --enable-chunked-prefill \
  --override-generation-config '{"temperature":1.0,"top_p":1.0}' \
  --nnodes 2 \
  --node-rank 1 \
  --master-addr 192.168.101.10 \
  --master-port 29501 \
  --headless

# ══ router on spark-a · http://spark-a.local:8080 · vllm-router, every group's API a worker (no key: each head checks it)
docker run -d --name sous-router --network host --restart unless-stopped registry.example/vllm-router:0.1.17 \
  --worker-urls http://spark-a.local:8000 http://spark-c.local:8000 \
  --host 0.0.0.0 \
  --port 8080 \
  --policy cache_aware \
  --health-check-interval-secs 5 \
  --worker-startup-check-interval 1
