#!/usr/bin/env bash
# GPU checks that need nothing but torch: run from the repo root on a CUDA machine whose Python
# has torch, numpy, tqdm, tensorboard, matplotlib and pytest (the lent H200 image has them; it
# has no PyPI access and no av / zarr / webdataset / ffmpeg / DALI).
#
#   - every method's bf16-autocast + channels_last_3d training step on the paper backbones
#     (tests/train/test_methods.py -m gpu) and the Slow-R50 bf16 timing test;
#   - `rhovid bench train --paper-only`: the rho2-byol-slow-r50 step at 224^2, steps/s, clips/s
#     and achieved TFLOP/s, written as benchmarks/results/train-<date>-cuda.md (+ .json).
#
# The DALI mixed-decoder checks (tests/train/test_dali.py -m gpu, `rhovid bench loader --gpu`)
# also need nvidia-dali-cuda120 (424 MB wheel, plus nvidia-nvimgcodec-cu12 and
# nvidia-libnvcomp-cu12), av (35 MB) and an ffmpeg binary (imageio-ffmpeg, 68 MB) carried as
# wheels in parts of < 64 MiB: see README "Benchmarks".
#
# Results and logs go to $OUT (the device tool's folder) or ./gpu-out.
set -uo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"

"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')" || exit 2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

# rhovid itself, without its dependencies (torch is the machine's own; the pin is for CPU hosts)
site=/tmp/rhovid-site
"$py" -m pip install -q --no-deps --no-build-isolation --no-index --target "$site" . || exit 3
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
# -P: the repo root must not come first on sys.path, or its rhovid/ folder (the top package
# only; the stages live in ingest/, train/, ...) would shadow the installed package

status=0
"$py" -P -m pytest -q -m gpu -p no:cacheprovider tests/train/test_methods.py tests/train/test_bench_train.py \
    2>&1 | tee "$out/pytest-gpu.txt" || status=1
day="$(date +%F)"
"$py" -P -m rhovid.cli bench train --device cuda --paper-only --paper-batch "${PAPER_BATCH:-16}" \
    --warmup 10 --steps 50 --out "$out/train-$day-cuda.md" 2>&1 | tee "$out/bench-train.txt" || status=1
exit $status
