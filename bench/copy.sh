#!/usr/bin/env bash
# Benchmark: copying a checkpoint between the two simulated nodes over their own addresses.
#   rsync (plain)   rsync -a run by hand on spark-1 to spark-2 (the peer)
#   sous rsync      `sous model --fetch` when spark-2 lacks it: status of both nodes, the copy (rsync between
#                   the nodes, progress polled), the check of both nodes afterwards — whole process wall time
#   sous stream     the same when spark-2 refuses spark-1's key: tar | sous | tar over the two SSH sessions
# SIZE_MIB (default 2048) in 4 shards. Median of RUNS (default 3). Root; needs ~3 × SIZE of free disk.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-2048}
RUNS=${RUNS:-3}
bash scripts/install-deps
swift build -c release --product sous >/dev/null
SOUS=$(swift build -c release --show-bin-path)/sous
dir=$(mktemp -d /tmp/sous-bench-copy-XXXX)
trap '$SOUS sim down --dir $dir >/dev/null; rm -rf $dir' EXIT
export VLLM_API_KEY=bench XDG_STATE_HOME=$dir/state
$SOUS sim up --dir $dir >/dev/null
$SOUS sim hub-add --dir $dir bench/big --shards 4 --shard-bytes $((SIZE_MIB * 1024 * 1024 / 4)) >/dev/null
sed 's|^model: .*|model: bench/big|' recipes/nemotron-3-super-nvfp4.yaml > $dir/big.yaml
inv=$dir/sim.yaml
repo=/home/sous/.cache/huggingface/hub/models--bench--big
$SOUS model --recipe $dir/big.yaml --inventory $inv --fetch >/dev/null 2>&1
bytes=$($SOUS exec -i $inv --nodes spark-1 -- "du -sbL $repo/snapshots | cut -f1" 2>/dev/null | sed 's/^spark-1: //')
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
clear2() { $SOUS exec -i $inv --nodes spark-2 -- "rm -rf $repo" >/dev/null; sync; }
plain=() sousr=() souss=()
# The plain rsync uses the known_hosts file sous wrote on spark-1 (the host key sous verified for spark-2).
for i in $(seq $RUNS); do
  clear2
  t=$($SOUS exec -i $inv --nodes spark-1 -- "s=\$(date +%s%N); rsync -a --exclude='*.incomplete' -e 'ssh -o BatchMode=yes -o UserKnownHostsFile=/home/sous/.cache/sous/known_hosts' $repo/ sous@10.213.0.12:$repo/ || exit 1; e=\$(date +%s%N); echo \$((e-s))" 2>/dev/null | sed 's/^spark-1: //')
  plain+=($t)
  clear2; s=$(now); $SOUS model --recipe $dir/big.yaml --inventory $inv --fetch >/dev/null 2>&1; sousr+=($(( $(now) - s )))
done
$SOUS sim fault --dir $dir spark-2 no-node-ssh >/dev/null
for i in $(seq $RUNS); do
  clear2; s=$(now); $SOUS model --recipe $dir/big.yaml --inventory $inv --fetch >/dev/null 2>&1; souss+=($(( $(now) - s )))
done
row() { local ns=$(printf '%s\n' "${@:2}" | median); awk -v n="$1" -v ns=$ns -v b=$bytes 'BEGIN {printf "%-13s %8.2f s %9.0f MiB/s\n", n, ns/1e9, b/1048576/(ns/1e9)}'; }
printf 'copy of %s MiB (4 shards) spark-1 → spark-2, median of %s runs, %s cores\n' $((bytes / 1048576)) $RUNS $(nproc)
printf '%-13s %10s %15s\n' method time throughput
row "rsync (plain)" "${plain[@]}"
row "sous rsync" "${sousr[@]}"
row "sous stream" "${souss[@]}"
