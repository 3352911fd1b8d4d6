#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 / Node 20 machine: Debian's chromium (headless browser for the
# e2e tests, and SwiftShader's Vulkan driver that gives Dawn a software GPU), the Vulkan loader,
# the npm dependencies, and Mesa 25's lavapipe in .gl/ for the f16/subgroup tier tests only
# (scripts/lavapipe.sh: not installed system-wide, so the rest of the suite keeps SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -f /usr/lib/chromium/vk_swiftshader_icd.json ] || need+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${need[*]} from Debian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

bash scripts/lavapipe.sh || echo "setup: lavapipe could not be set up; the f16/subgroup tier tests will skip" >&2
