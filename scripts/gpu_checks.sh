#!/usr/bin/env bash
# The generation checks that need a GPU (issue 7), in one device call of about 8 minutes.
#
# Here, first (no GPU needed; writes the git-ignored .gpu/, ~7 MiB: model shapes, no weights):
#     make gpu-prep
# Then one device call: carry [".gpu"], command "bash scripts/gpu_checks.sh", timeout_s 560.
# The lent machine has torch, transformers, accelerate and peft; the benchmarks import this
# checkout directly. Random weights train and score at the real model's speed (see
# benchmarks/model_shape.py); decoding with them runs every beam to the token cap.
set -o pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers',
transformers.__version__)" 2>&1 | tee -a "$out/gpu.txt"
# student training vs a plain HF Trainer, K = 3 labels per prompt (SmolLM2-135M's shape)
timeout 200 python3 benchmarks/bench_lm_train.py --model .gpu/smollm2-135m --random-init \
    --labels 3 --steps 20 --repeats 2 2>&1 | tee "$out/train_135m.log"
# teacher N-best decoding vs a per-utterance generate loop
timeout 150 python3 benchmarks/bench_decode.py --model .gpu/smollm2-135m --random-init \
    --device auto --n 48 2>&1 | tee "$out/decode_135m.log"
# memory and speed on a ≥ 1B student (SmolLM2-1.7B's shape), K = 3, the default chunking
timeout 200 python3 benchmarks/bench_lm_train.py --model .gpu/smollm2-1.7b-shape --random-init \
    --labels 3 --steps 8 --batch-size 16 --repeats 1 2>&1 | tee "$out/train_1.7b.log"
