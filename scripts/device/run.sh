#!/usr/bin/env bash
# On the GPU server, from the repo root: bash .device/run.sh <command...>
# Unpacks the loaders and node_modules that scripts/device/pack.sh packed, points Vulkan at the
# NVIDIA driver, puts node on PATH, prints the GPU, then runs the command.
set -eo pipefail
for f in .device/deb/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg}; mkdir -p "$XDG_RUNTIME_DIR"
mkdir -p /tmp/nodebin; xz -dc .device/node.xz > /tmp/nodebin/node; chmod +x /tmp/nodebin/node
export PATH=/tmp/nodebin:$PATH
[ -d node_modules ] || tar -xJf .device/node_modules.tar.xz
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$@"
