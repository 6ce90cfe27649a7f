#!/usr/bin/env bash
# Benchmark: `sous up` and `sous roll` on the simulated pair, wall time minus the simulated engine load time (target ≤ 3 s),
# with per-step times; a cold run (fresh nodes: pull, harden, env, start) and a warm one (everything ok). Root.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=${LOAD:-2}
bash scripts/install-deps
swift build -c release --product sous >/dev/null
SOUS=$(swift build -c release --show-bin-path)/sous
dir=$(mktemp -d /tmp/sous-bench-up-XXXX)
trap '$SOUS sim down --dir $dir >/dev/null; rm -rf $dir' EXIT
export VLLM_API_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export XDG_STATE_HOME=$dir/state
$SOUS sim up --dir $dir --load-seconds $LOAD >/dev/null
for run in cold warm; do
  s=$(date +%s%N)
  $SOUS up --recipe nemotron-3-super-nvfp4 --inventory $dir/sim.yaml --json > $dir/$run.json 2> $dir/$run.err || { cat $dir/$run.err; exit 1; }
  e=$(date +%s%N)
  wall=$(awk -v a=$s -v b=$e 'BEGIN {printf "%.2f", (b-a)/1e9}')
  restarted=$(jq -r .restarted $dir/$run.json)
  load=$([ "$restarted" = true ] && echo $LOAD || echo 0)
  printf '%-5s wall %5s s, simulated load %s s, sous %5s s   ' $run $wall $load $(awk -v w=$wall -v l=$load 'BEGIN {printf "%.2f", w-l}')
  jq -r '[.steps[] | "\(.step) \(.seconds)"] | join(", ")' $dir/$run.json
done
echo "(wait includes the simulated load; pull includes a simulated 0.5 s download on the cold run)"
# A good roll: the serving gap (old engine stopped → new engine healthy) minus the simulated load (target ≤ 1.5 s).
$SOUS roll --recipe nemotron-3-super-nvfp4 --inventory $dir/sim.yaml --image vllm/vllm-openai:v0.28.0 --json > $dir/roll.json 2> $dir/roll.err || { cat $dir/roll.err; exit 1; }
gap=$(jq -r .serving_gap_s $dir/roll.json)
printf 'roll  serving gap %s s, simulated load %s s, sous %s s (%s)\n' $gap $LOAD $(awk -v g=$gap -v l=$LOAD 'BEGIN {printf "%.2f", g-l}') "$(jq -r '"\(.fingerprint_old) → \(.fingerprint_new)"' $dir/roll.json)"
