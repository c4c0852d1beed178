#!/bin/bash
# One call of the device tool for issue 8 (GPU): correctness, throughput, 40,000-image scans.
#
# Prepared on the CPU so a session that is lent an accelerator spends its device time on
# measurements, not set-up. On the development machine, in the repository root, once:
#
#   echo /.whl/ >> .git/info/exclude; echo /.gpudata/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl cleanlab termcolor
#   mkdir -p .gpudata && cp ../shared/datasets/cifar10-dev.tar.gz ../shared/datasets/cifar10n-dev-labels.csv.gz .gpudata/
#
# then call the device tool's `run` with carry [".whl", ".gpudata"] and the command
#   bash benchmarks/gpu/device_session.sh [STEP ...]      (steps: tests throughput scan threads stacked compile large
#                                                          ceiling; default: all but ceiling)
# Device time is short (15 minutes a session, start-up included; at most 10 minutes a command), so
# run the steps in order of what they decide, e.g. a first call `tests scan stacked` (correctness,
# the default scan's time, whether one stacked program beats K sequential folds), a second
# `threads large` (streams; the quality target), `compile` and `throughput` last. Each step's
# lines reach $OUT as soon as it ends, so a command cut off by its timeout keeps finished steps.
# Each step appends JSON lines to $OUT/gpu.jsonl and its log to $OUT/<step>.log; the
# figures go to benchmarks/results/ and the README's GPU section only from those files.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH=$PYTHONPATH:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/device.txt"

steps=${*:-tests throughput scan threads stacked compile large}
for step in $steps; do
  case $step in
    tests)  # issue 8, point 1: the CUDA-marked tests
      python3 -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/tests.log" | tail -5 ;;
    throughput)  # points 2 and 4: single-fold training images/s and peak memory, both budgets, images resident
      # on the GPU, then streamed batch by batch from pinned host memory (a data set larger than the GPU)
      for b in small large; do
        for n in 10000 40000; do
          python3 benchmarks/fold_throughput.py --device cuda --images $n --epochs 4 --threads 8 --budget $b \
            2>>"$OUT/throughput.log" | tee -a "$OUT/gpu.jsonl"
        done
        python3 benchmarks/fold_throughput.py --device cuda --images 40000 --epochs 4 --threads 8 --budget $b --stream \
          2>>"$OUT/throughput.log" | tee -a "$OUT/gpu.jsonl"
      done ;;
    compile)  # point 2: torch.compile of the fold model (steady state: the compilation runs in the untimed warm-up fold, its time is warmup_s)
      for mode in default reduce-overhead; do for b in small large; do
        python3 benchmarks/fold_throughput.py --device cuda --images 40000 --epochs 8 --threads 8 --budget $b --compile $mode \
          2>>"$OUT/compile.log" | tee -a "$OUT/gpu.jsonl"
      done; done
      for b in small large; do  # the eager reference at the same epochs
        python3 benchmarks/fold_throughput.py --device cuda --images 40000 --epochs 8 --threads 8 --budget $b \
          2>>"$OUT/compile.log" | tee -a "$OUT/gpu.jsonl"
      done ;;
    scan)  # points 1-3: the 40,000-image scan with CIFAR-10N random1 labels, default settings
      python3 benchmarks/detect.py --data .gpudata/cifar10-dev.tar.gz --human-labels .gpudata/cifar10n-dev-labels.csv.gz \
        --work /tmp/bench --per-class 0 --human random1 --baseline shared --device cuda --no-progress \
        2>>"$OUT/scan.log" | tee -a "$OUT/gpu.jsonl" ;;
    threads)  # point 2: the same scan with all 5 folds trained at once, one CUDA stream each (--executor threads)
      python3 benchmarks/detect.py --data .gpudata/cifar10-dev.tar.gz --human-labels .gpudata/cifar10n-dev-labels.csv.gz \
        --work /tmp/bench --per-class 0 --human random1 --baseline shared --device cuda --executor threads \
        --fold-workers 5 --tag threads --no-progress 2>>"$OUT/threads.log" | tee -a "$OUT/gpu.jsonl" ;;
    stacked)  # point 2: the same scan with the 5 folds as one stacked network (--executor stacked), both budgets
      for b in small large; do
        python3 benchmarks/detect.py --data .gpudata/cifar10-dev.tar.gz --human-labels .gpudata/cifar10n-dev-labels.csv.gz \
          --work /tmp/bench --per-class 0 --human random1 --baseline shared --device cuda --executor stacked \
          --budget $b --tag stacked-$b --no-progress 2>>"$OUT/stacked.log" | tee -a "$OUT/gpu.jsonl"
      done ;;
    large)  # point 3: the quality a GPU can buy, --budget large (labelaudit.config.BUDGETS), three label sets
      for h in random1 worst aggre; do
        python3 benchmarks/detect.py --data .gpudata/cifar10-dev.tar.gz --human-labels .gpudata/cifar10n-dev-labels.csv.gz \
          --work /tmp/bench --per-class 0 --human $h --baseline shared --device cuda --budget large --tag large \
          --no-progress 2>>"$OUT/large.log" | tee -a "$OUT/gpu.jsonl"
      done ;;
    ceiling)  # point 3, optional: the noise-free ceiling of the large budget (folds trained on the true labels, all 40,000)
      python3 benchmarks/ceiling.py --data .gpudata/cifar10-dev.tar.gz --human-labels .gpudata/cifar10n-dev-labels.csv.gz \
        --work /tmp/bench --per-class 0 --min-index 0 --device cuda --budget large \
        2>>"$OUT/ceiling.log" | tee -a "$OUT/gpu.jsonl" ;;
    *) echo "unknown step $step" >&2 ;;
  esac
done
