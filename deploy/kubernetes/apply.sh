#!/bin/sh
# Applies this directory with every shard's start barrier (PERFSCOPE_START_AT) set
# LEAD seconds from now (default 120), so that every pod is scheduled and set up
# before the load starts. The time is computed here, in your shell: a ConfigMap holds
# text and never runs shell arithmetic.
#   deploy/kubernetes/apply.sh [LEAD_SECONDS]
set -eu
lead="${1:-120}"
case "$lead" in
  '' | *[!0-9]*) echo "apply.sh: LEAD_SECONDS must be a whole number of seconds, got '$lead'" >&2; exit 2 ;;
esac
start=$(( $(date +%s) + lead ))
dir=$(dirname "$0")
kubectl kustomize "$dir" \
  | sed "s/^  PERFSCOPE_START_AT: \"\"\$/  PERFSCOPE_START_AT: \"$start\"/" \
  | kubectl apply -f -
echo "apply.sh: the shards start their load at $start ($(date -d "@$start" 2>/dev/null || echo "unix time $start"))"
