#!/usr/bin/env bash
# One prepared GPU check for llmwork: runs every GPU path this machine can run, each under a timeout, in under
# 8 minutes, and prints one summary table (part | status | seconds | result).
#
#   bash bench/gpu_check.sh                        # on a machine with an NVIDIA GPU
#   GPU_CHECK_DEVICE=cpu bash bench/gpu_check.sh   # dry run of the same plumbing on the CPU, tiny sizes
#
# Parts:
#   train        GPT training with bf16 autocast and torch.compile (bench/gpu_train_check.py train): tokens/s, MFU
#   ddp          DDP with NCCL, one process per GPU, torch.multiprocessing, no Dask (gpu_train_check.py ddp);
#                its loss curve must match one process on the whole batch
#   torch_check  k-means / embedder / top-k search / semantic dedup on CUDA vs CPU (bench/gpu_torch_check.py), if present
#   nbdev_cuda   `nbdev_test --flags cuda` over the notebooks, only where cuDF, dask_cudf, dask_cuda and nbdev import
# Only the repo on PYTHONPATH is needed: the torch parts import llmwork.models/llmwork.train, which need no Dask.
# Exit status: 0 unless a part that ran failed (on a machine without CUDA the GPU parts are skipped, exit 0).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-470}"
LOG_DIR="$(mktemp -d -t llmwork-gpu-check-XXXXXX)"
START=$(date +%s)
ROWS=()
FAILED=0

elapsed() { echo $(( $(date +%s) - START )); }
row() { ROWS+=("$1|$2|$3|$4"); }   # part | status | seconds | result

# --- which device -------------------------------------------------------------------------------------------
DEVICE="${GPU_CHECK_DEVICE:-}"
if [ -z "$DEVICE" ]; then
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then DEVICE=cuda; else DEVICE=none; fi
fi
if [ "$DEVICE" = "cuda" ]; then
  GPU_LINE=$("$PY" -c "import torch; n=torch.cuda.device_count(); print(f'{n} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}')" 2>&1 | tail -1)
elif [ "$DEVICE" = "cpu" ]; then
  GPU_LINE="CPU dry run (GPU_CHECK_DEVICE=cpu): same plumbing, tiny sizes, gloo instead of NCCL"
else
  GPU_LINE="no CUDA device (torch.cuda.is_available() is False): GPU parts skipped"
fi
echo "llmwork gpu_check: $GPU_LINE"

# run_part NAME TIMEOUT_S CMD...: runs CMD under a timeout, reads its `RESULT {json}` line, records a table row
run_part() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET_S - $(elapsed) ))
  if [ "$left" -lt 20 ]; then row "$name" "skipped" "0" "time budget spent"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local log="$LOG_DIR/$name.log" t0=$(date +%s) rc
  echo "--- $name (timeout ${limit}s, log $log)"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1; rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local res; res=$(grep '^RESULT ' "$log" | tail -1 | sed 's/^RESULT //')
  local summary
  if [ -n "$res" ]; then
    summary=$("$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); extra=[f"{k}={v}" for k,v in r.items() if k not in ("ok","note") and v is not None]; print("; ".join(filter(None,[r.get("note",""), ", ".join(extra)])))' "$res" 2>/dev/null)
  else
    summary=$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-160)
  fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then row "$name" "failed" "$dt" "timed out after ${limit}s; $summary"; FAILED=1
  elif [ "$rc" -ne 0 ]; then row "$name" "failed" "$dt" "exit $rc: $summary"; FAILED=1
  else row "$name" "ran" "$dt" "$summary"; fi
}

if [ "$DEVICE" = "none" ]; then
  for p in train ddp torch_check nbdev_cuda; do row "$p" "skipped" "0" "no CUDA device"; done
else
  run_part train 170 "$PY" bench/gpu_train_check.py train --device "$DEVICE"
  run_part ddp 150 "$PY" bench/gpu_train_check.py ddp --device "$DEVICE"
  if [ -f bench/gpu_torch_check.py ]; then
    run_part torch_check 120 "$PY" bench/gpu_torch_check.py --device "$DEVICE"
  else
    row torch_check "skipped" "0" "bench/gpu_torch_check.py not present"
  fi
  if [ "$DEVICE" != "cuda" ]; then
    row nbdev_cuda "skipped" "0" "needs a CUDA device (cuda-flagged cells)"
  elif ! missing=$("$PY" -c "
import importlib, sys
miss = [m for m in ('cudf', 'dask_cudf', 'dask_cuda', 'dask', 'distributed', 'nbdev') if importlib.util.find_spec(m) is None]
print(', '.join(miss)); sys.exit(1 if miss else 0)" 2>&1); then
    row nbdev_cuda "skipped" "0" "not installed here: $missing"
  else
    run_part nbdev_cuda 400 bash -c 'nbdev_test --flags cuda --n_workers 1 && echo "RESULT {\"ok\": true, \"note\": \"nbdev_test --flags cuda: Success\"}"'
  fi
fi

# --- summary -------------------------------------------------------------------------------------------------
echo
echo "llmwork gpu_check summary ($GPU_LINE; $(elapsed)s total; logs in $LOG_DIR)"
printf '%-12s | %-8s | %5s | %s\n' part status s result
printf '%-12s-+-%-8s-+-%5s-+-%s\n' ------------ -------- ----- ------------------------------------------------------------
for r in "${ROWS[@]}"; do
  IFS='|' read -r part status secs res <<<"$r"
  printf '%-12s | %-8s | %5s | %s\n' "$part" "$status" "$secs" "$res"
done
exit $FAILED
