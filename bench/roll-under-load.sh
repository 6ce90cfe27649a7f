#!/usr/bin/env bash
# Benchmark: a good `sous roll` under steady client traffic, one pair against two pairs behind vLLM's router.
# A client loop (2 connections, one short chat completion after another, curl) runs through the endpoint the
# whole time; printed: requests sent, failed (not a 200 with a completion) and the longest time between two good
# answers. One pair has no second copy of the model, so it stops serving while it restarts; two groups behind
# the router (vllm-router from PyPI) roll one at a time, each out of the router meanwhile. LOAD (default 2) is the
# simulated engine's load time, which is what a group's restart costs here. Root; scripts/router-env first.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=${LOAD:-2}
bash scripts/install-deps
bash scripts/router-env >/dev/null
swift build -c release --product sous >/dev/null
SOUS=$(swift build -c release --show-bin-path)/sous
dir=$(mktemp -d /tmp/sous-bench-roll-XXXX)
trap '$SOUS sim down --dir $dir >/dev/null; rm -rf $dir' EXIT
export VLLM_API_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export XDG_STATE_HOME=$dir/state
model=nvidia/nemotron-3-super

client() { # URL OUT: one request after another until killed; a line per answer: time, ok|code
  local body='{"model":"'$model'","max_tokens":8,"messages":[{"role":"user","content":"Say hi."}]}'
  while :; do
    out=$(curl -s --max-time 30 -w '\n%{http_code}' -H "Authorization: Bearer $VLLM_API_KEY" -H 'Content-Type: application/json' -d "$body" "$1/v1/chat/completions" || true)
    code=${out##*$'\n'}
    if [ "$code" = 200 ] && jq -e '.choices | length > 0' <<<"${out%$'\n'*}" >/dev/null 2>&1; then r=ok; else r=$code; fi
    echo "$(date +%s.%N) $r" >> "$2"
  done
}

run() { # NAME NODES ENDPOINT
  local name=$1 nodes=$2 extra=()
  [ "$nodes" -gt 2 ] && extra=(--router)
  $SOUS sim down --dir $dir >/dev/null 2>&1 || true
  $SOUS sim up --dir $dir --nodes $nodes "${extra[@]}" --load-seconds $LOAD >/dev/null
  $SOUS up -r nemotron-3-super-nvfp4 -i $dir/sim.yaml --json > $dir/up.json 2> $dir/up.err || { cat $dir/up.err; exit 1; }
  local url=$3
  : > $dir/load.txt
  client "$url" $dir/load.txt & local c1=$!
  client "$url" $dir/load.txt & local c2=$!
  sleep 1
  local s; s=$(date +%s.%N)
  $SOUS roll -r nemotron-3-super-nvfp4 -i $dir/sim.yaml --image vllm/vllm-openai:v0.25.0 > $dir/roll.out 2>&1 || { cat $dir/roll.out; kill $c1 $c2; exit 1; }
  local e; e=$(date +%s.%N)
  sleep 1
  kill $c1 $c2; wait $c1 $c2 2>/dev/null || true
  sort -n $dir/load.txt | awk -v name="$name" -v roll="$(awk -v a=$s -v b=$e 'BEGIN {printf "%.1f", b-a}')" '
    { n++ } $2 != "ok" { f++ } $2 == "ok" { if (last) { g = $1 - last; if (g > gap) gap = g } last = $1 }
    END { printf "%-34s roll %5s s: %5d requests, %4d failed, longest gap %.2f s\n", name, roll, n, f, gap }'
}

run "one pair (tp2), no router" 2 http://10.213.0.11:8000
run "two pairs behind vllm-router" 4 http://10.213.0.11:8080
