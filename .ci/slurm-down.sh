#!/usr/bin/env bash
# Stops the cluster .ci/slurm-up.sh started (state under $1, default /tmp/llmcb-slurm).
dir="${1:-/tmp/llmcb-slurm}"
for p in slurmd slurmctld; do [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null; done
pkill -x munged 2>/dev/null
exit 0
