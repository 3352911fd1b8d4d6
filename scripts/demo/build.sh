#!/usr/bin/env bash
# Rebuilds the embedded demo model in public/demo/model from scratch with Crucible's own engine:
# tokenizer (BPE trained on the corpus) -> initial weights -> pretraining (stage pt, full) ->
# model.safetensors + config + tokenizer files, then samples and the LoRA check on the demo data.
# Working files (initial weights, checkpoints, logs) go to scripts/demo/.work; a rerun resumes
# pretraining from the newest checkpoint there (delete the folder to start over).
#
#   bash scripts/demo/build.sh [--steps=N] [other scripts/demo/pretrain.ts options]
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { node --import ./bin/register.js "$@"; }
work=scripts/demo/.work
mkdir -p "$work"
start=$(date +%s)
run scripts/demo/train-tokenizer.ts
if [ ! -f "$work/init/model.safetensors" ]; then run scripts/demo/init-model.ts; fi
run scripts/demo/pretrain.ts "$@" 2>&1 | tee -a "$work/pretrain.log"
run scripts/demo/check-sft.ts 2>&1 | tee "$work/check-sft.log"
echo "demo model rebuilt in $(( ($(date +%s) - start) / 60 )) min: public/demo/model ($(du -sh public/demo/model | cut -f1))"
