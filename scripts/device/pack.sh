#!/usr/bin/env bash
# Prepares .device/ (git-ignored) so the GPU session script can run on a bare GPU server, which
# has no Node, no npm registry and no Vulkan loader: the Node binary, node_modules without the
# tokenizer test packages and other platforms' Dawn builds (vitest and tsx included, so the tier
# tests and TypeScript scripts run there as here), the Vulkan/GL loader .debs, run.sh and the
# PyTorch+PEFT anchor. Run here, then send .device along (the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info .device/deb
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
[ -s .device/node.xz ] || xz -T0 -6 -c "$(command -v node)" > .device/node.xz
tar -cJf .device/node_modules.tar.xz --exclude='node_modules/@lenml' --exclude='node_modules/typescript' \
  --exclude='node_modules/playwright-core' --exclude='node_modules/openai' --exclude='node_modules/.cache' \
  --exclude='node_modules/webgpu/dist/darwin*' --exclude='node_modules/webgpu/dist/win32*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' --exclude='*.map' node_modules
if ! ls .device/deb/libvulkan1_*.deb >/dev/null 2>&1; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
  mkdir -p /tmp/amd64-lists/partial
  apt-get $o update -qq >/dev/null 2>&1 || true
  (cd .device/deb && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi
cp scripts/device/run.sh scripts/device/torch_lora_baseline.py .device/
du -sh .device
