#!/usr/bin/env bash
# Registers the tslab kernel for this project (under .jupyter/, JUPYTER_PATH points there) and
# executes every notebook headless; the first failing cell fails the script.
#
#   scripts/notebooks.sh install          register the kernel only (then: JUPYTER_PATH=$PWD/.jupyter/share/jupyter jupyter notebook)
#   scripts/notebooks.sh [NOTEBOOK...]    register and execute (default: notebooks/0*.ipynb) with Jupyter
#   scripts/notebooks.sh --node [NB...]   execute without Jupyter (tslab's executor in Node; the GPU host)
#
# Environment: LLMCB_MATRIX (smoke), LLMCB_DATA_OUT (rows; default a temporary directory removed at exit),
# LLMCB_DATA (datasets), NB_OUT (executed copies; default tmp/notebooks), NB_TIMEOUT (s per cell, 900).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py=/usr/bin/python3 # Debian's python3 (jupyter-client, nbconvert, nbclient, ipykernel), not another one on PATH
export JUPYTER_PATH="$root/.jupyter/share/jupyter"
export LLMCB_BACKEND="${LLMCB_BACKEND:-wasm}"
export LLMCB_MATRIX="${LLMCB_MATRIX:-smoke}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
out="${NB_OUT:-$root/tmp/notebooks}"
mkdir -p "$out"
if [ -z "${LLMCB_DATA_OUT:-}" ]; then
  # A scratch folder for the rows, removed on exit (set LLMCB_DATA_OUT to keep them).
  LLMCB_DATA_OUT="$(mktemp -d "${TMPDIR:-/tmp}/llmcb-nb-XXXXXX")"
  export LLMCB_DATA_OUT
  trap 'rm -rf "$LLMCB_DATA_OUT"' EXIT
fi

install_kernel() {
  [ -x node_modules/.bin/tslab ] || { echo "notebooks: node_modules/.bin/tslab missing (npm ci)" >&2; exit 1; }
  node -e "require('zeromq')" 2>/dev/null || { echo "notebooks: the zeromq binding does not load (tslab's kernel needs node_modules/zeromq/build/<platform>)" >&2; exit 1; }
  node_modules/.bin/tslab install --python="$py" --binary="$root/node_modules/.bin/tslab" --prefix="$root/.jupyter" >/dev/null
}

if [ "${1:-}" = install ]; then
  install_kernel
  echo "tslab kernel registered under $JUPYTER_PATH (export JUPYTER_PATH=$JUPYTER_PATH)"
  exit 0
fi

if [ "${1:-}" = --node ]; then
  shift
  [ $# -gt 0 ] || set -- notebooks/0*.ipynb
  node --import tsx scripts/nb-exec.ts --out "$out" "$@" # not exec: the exit trap removes the scratch rows
  exit 0
fi

[ $# -gt 0 ] || set -- notebooks/0*.ipynb
command -v jupyter >/dev/null || { echo "notebooks: jupyter not found (apt-get install jupyter-client jupyter-nbconvert python3-nbclient python3-ipykernel)" >&2; exit 1; }
install_kernel
echo "rows -> $LLMCB_DATA_OUT/results; executed notebooks -> $out"
for nb in "$@"; do
  t0=$(date +%s)
  jupyter nbconvert --to notebook --execute --ExecutePreprocessor.kernel_name=tslab \
    --ExecutePreprocessor.timeout="${NB_TIMEOUT:-900}" --output-dir="$out" "$nb"
  echo "$nb: ok in $(( $(date +%s) - t0 )) s"
done
