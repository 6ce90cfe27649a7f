#!/usr/bin/env bash
# Benchmark: `sous exec -- uptime` against pdsh (-R ssh), parallel-ssh and ansible-core (-m raw, -m shell)
# on 1, 8 and 32 loopback sshd nodes, whole-process wall time, median of RUNS runs. Needs root.
# Installs pdsh and pssh from Debian and ansible-core from PyPI into a venv under .build-bench/ if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
bash scripts/install-deps
command -v pdsh >/dev/null && command -v parallel-ssh >/dev/null || { apt-get install -y -qq pdsh pssh >/dev/null; }
venv=.build-bench/venv
[ -x $venv/bin/ansible ] || { python3 -m venv $venv && $venv/bin/pip -q install ansible-core; }
swift build -c release --product sous >/dev/null
SOUS=$(swift build -c release --show-bin-path)/sous
dir=$(mktemp -d /tmp/sous-bench-XXXX)
trap 'bash bench/nodes.sh down $dir; rm -rf $dir' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { # prints the median wall time in ms of "$@"
  for _ in $(seq 1 "$RUNS"); do
    s=$(date +%s%N); "$@" > "$dir/last.log" 2>&1 || { echo "FAILED: $*" >&2; grep -m3 -iE "unreachable|error|fail" "$dir/last.log" >&2; }; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 ))
  done | median
}

printf '%-6s %10s %10s %14s %12s %14s   %s\n' nodes sous pdsh parallel-ssh ansible-raw ansible-shell "sous/pdsh"
declare -A sous_ms
net=3
for n in 1 8 32; do
  # A fresh address range per size: no peer can reuse a connection or a host key from the previous size.
  bash bench/nodes.sh down $dir 2>/dev/null || true
  net=$((net + 1))
  bash bench/nodes.sh up $n $dir $net
  hosts=$(paste -sd, $dir/hosts)
  # sous inventory
  { echo "cluster: bench"; echo "image: vllm/vllm-openai:v0.24.0"; echo "known_hosts: $dir/known_hosts"
    echo "interconnect: {interface: lo}"; echo "nodes:"
    i=0; while read -r a; do i=$((i+1)); echo "  - {name: n$i, host: $a, user: sousbench, identity_file: $dir/client, interconnect_ip: $a}"; done < $dir/hosts
  } > $dir/inv.yaml
  # ansible inventory
  { echo "[all]"; while read -r a; do echo "$a ansible_user=sousbench ansible_ssh_private_key_file=$dir/client"; done < $dir/hosts
    echo "[all:vars]"; echo "ansible_ssh_common_args='-o UserKnownHostsFile=$dir/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'"
    echo "ansible_python_interpreter=/usr/bin/python3"; } > $dir/ansible.ini
  sshargs="-o UserKnownHostsFile=$dir/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -i $dir/client"
  t_sous=$(SSH_AUTH_SOCK= timeit $SOUS exec -i $dir/inv.yaml -- uptime)
  t_pdsh=$(PDSH_SSH_ARGS="$sshargs -l%u %h" timeit pdsh -R ssh -f $n -l sousbench -w "$hosts" uptime)
  t_pssh=$(timeit parallel-ssh -p $n -l sousbench -x "$sshargs" -h $dir/hosts uptime)
  t_raw=$(ANSIBLE_HOST_KEY_CHECKING=True timeit $venv/bin/ansible all -i $dir/ansible.ini -f $n -m raw -a uptime)
  t_shell=$(ANSIBLE_HOST_KEY_CHECKING=True timeit $venv/bin/ansible all -i $dir/ansible.ini -f $n -m shell -a uptime)
  sous_ms[$n]=$t_sous
  ratio=$(awk -v a=$t_sous -v b=$t_pdsh 'BEGIN {printf "%.2f", a/b}')
  printf '%-6s %8s ms %8s ms %12s ms %10s ms %12s ms   %s\n' $n $t_sous $t_pdsh $t_pssh $t_raw $t_shell $ratio
done
awk -v a=${sous_ms[32]} -v b=${sous_ms[1]} 'BEGIN {printf "sous at 32 nodes / sous at 1 node: %.2f\n", a/b}'
