#!/usr/bin/env bash
# The one GPU-session script of the performance issue (about 7 minutes, so a 15-minute lease can
# run it twice). Prepare here with `bash scripts/device/pack.sh`, then with the device tool:
#   run(command: "bash .device/run.sh bash scripts/device/session.sh", carry: [".device"], timeout_s: 540)
# Each step has its own time limit and writes to $OUT; a step that fails or runs out of time does
# not stop the next. Files back (at most 8): session.log, env.json, probe.json, tier-tests.log,
# bench.json, profile.txt, fixtures.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
node=(node --import ./bin/register.js)
step() { # step NAME SECONDS command...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@"
  echo "== $name: exit $? after $((SECONDS - t0))s"
}

# 1. the adapter: features, subgroup sizes and matrix configs, limits, driver (~10 s)
step env 60 node bin/crucible.js env --json > "$OUT/env.json"
# 2. compile probes: f16, subgroups, both subgroup-matrix load/store forms (~20 s)
step probe 90 "${node[@]}" scripts/device/probe.ts > "$OUT/probe.json"
# 3. the kernel tests on every tier the adapter offers, subgroup-matrix tier included (~60 s)
step tier-tests 150 node node_modules/vitest/vitest.mjs run tests/kernels. > "$OUT/tier-tests.log" 2>&1
# 4. fixtures of new architectures from HF transformers + PEFT (~30 s)
step fixtures 120 bash -c 'python3 tests/fixtures/models/generators/gen_new_archs.py /tmp/fixtures && tar -C /tmp -czf "$0/fixtures.tar.gz" fixtures' "$OUT"
# 5. one profiled Qwen2.5-0.5B-shaped LoRA step: per-kernel ms, dispatches, encode vs GPU time (~40 s)
step profile 120 "${node[@]}" scripts/profile-step.ts qwen2.5-0.5b 8 512 > "$OUT/profile.txt"
# 6. kernel timings at the real shapes, then training and decode on the three model shapes with
#    PyTorch+PEFT bf16 in the same command (~3 min)
step bench 300 "${node[@]}" bench/run.ts --anchor .device/torch_lora_baseline.py --out "$OUT/bench.json"
echo "== done after ${SECONDS}s"
