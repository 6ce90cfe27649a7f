#!/usr/bin/env bash
# Starts N real sshd "nodes" on 127.0.NET.1..N:22 for benchmarks (root), with a login user, a client key and a
# known_hosts file under DIR. `bench/nodes.sh up N DIR [NET]` (NET defaults to 3) / `bench/nodes.sh down DIR`.
set -euo pipefail
cmd=$1
case "$cmd" in
up)
  n=$2; dir=$3; net=${4:-3}; user=sousbench
  mkdir -p "$dir/authorized" /run/sshd; chmod 0755 /run/sshd "$dir" "$dir/authorized"  # sshd reads keys as the user
  id -u $user >/dev/null 2>&1 || { useradd -m -s /bin/sh $user; usermod -p '*' $user; }
  [ -f "$dir/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client"
  cp "$dir/client.pub" "$dir/authorized/$user"; chmod 0644 "$dir/authorized/$user"
  : > "$dir/known_hosts"; : > "$dir/hosts"
  for i in $(seq 1 "$n"); do
    addr=127.0.$net.$i
    ssh-keygen -q -t ed25519 -N '' -f "$dir/host$i" <<< y >/dev/null 2>&1 || true
    chmod 600 "$dir/host$i"
    cat > "$dir/sshd$i.conf" <<CONF
ListenAddress $addr
Port 22
HostKey $dir/host$i
PidFile $dir/sshd$i.pid
AuthorizedKeysFile $dir/authorized/%u
StrictModes no
UsePAM no
PasswordAuthentication no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
LogLevel ERROR
CONF
    /usr/sbin/sshd -f "$dir/sshd$i.conf" -E "$dir/sshd$i.log"
    echo "$addr $(cut -d' ' -f1,2 "$dir/host$i.pub")" >> "$dir/known_hosts"
    echo "$addr" >> "$dir/hosts"
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.$net.$i/22) 2>/dev/null && break; sleep 0.02; done
  done
  ;;
down)
  dir=$2
  pids=()
  for pidfile in "$dir"/sshd*.pid; do [ -f "$pidfile" ] && { pids+=("$(cat "$pidfile")"); rm -f "$pidfile"; }; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Wait until each is gone or a zombie (PID 1 reaps late), so the next `up` can bind the same addresses.
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 200); do
      state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone)
      [ "$state" = gone ] || [ "$state" = Z ] && break
      sleep 0.01
    done
  done
  ;;
esac
