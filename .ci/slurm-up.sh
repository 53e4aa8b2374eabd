#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine (root; Debian's slurm-wlm and munge installed):
# munged, slurmctld and slurmd with .ci/slurm.conf, state and logs under $1 (default /tmp/llmcb-slurm).
# Prints the SLURM_CONF to export. .ci/slurm-down.sh stops what it started.
set -euo pipefail
dir="${1:-/tmp/llmcb-slurm}"
mkdir -p "$dir/slurmd" "$dir/slurmctld" /etc/munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || head -c 1024 /dev/urandom > /etc/munge/munge.key
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged
host="$(hostname -s)"
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
sed -e "s|@HOST@|$host|g" -e "s|@DIR@|$dir|g" -e "s|@CPUS@|$(nproc)|g" -e "s|@MEM@|$mem|g" "$(dirname "$0")/slurm.conf" > "$dir/slurm.conf"
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 30); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo -h -o %t | grep -q idle || { echo "slurm-up: the node did not come up (see $dir/*.log)" >&2; exit 1; }
echo "$SLURM_CONF"
