#!/usr/bin/env bash
# Mesa 25's lavapipe (Vulkan on the CPU) for the f16 / subgroup tier tests, kept out of the system:
# its .deb from Debian's bookworm-backports is unpacked into .gl/ (git-ignored) with an ICD file
# that points at it, so only processes that name .gl/lvp_icd.json (VK_ICD_FILENAMES) see it.
# Installed system-wide, Dawn would pick lavapipe over the SwiftShader fallback for every test and
# the suite would run about 30x slower. Its runtime libraries come from bookworm main; the system's
# libdrm 2.4.114 has every symbol it uses. Idempotent; prints where the ICD file is.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=.gl
ICD="$DEST/lvp_icd.json"
LIB="$DEST/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"

if [ -f "$LIB" ] && [ -s "$DEST/version" ] && grep -qF "$(pwd)/$LIB" "$ICD" 2>/dev/null; then
  echo "lavapipe: $ICD (mesa $(cat "$DEST/version"))"
  exit 0
fi
if [ "$(uname -m)" != x86_64 ] || ! command -v apt-get >/dev/null; then
  echo "lavapipe: needs Debian 12 on x86_64 (apt-get); the f16/subgroup tier tests will skip" >&2
  exit 0
fi

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
policy=$(apt-cache policy mesa-vulkan-drivers 2>/dev/null || true)
if [[ "$policy" != *bookworm-backports* ]]; then
  echo "lavapipe: adding Debian's bookworm-backports to apt's sources (nothing is installed from it)"
  echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  $SUDO apt-get update -qq
fi

# the driver's shared libraries, from bookworm main (plain libraries: no Vulkan driver among them)
libs=(libllvm15 libdrm2 libelf1 libexpat1 libzstd1 zlib1g libwayland-client0 libx11-xcb1 libxcb1
  libxcb-dri3-0 libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxshmfence1)
missing=()
for p in "${libs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "lavapipe: installing ${missing[*]} from Debian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# bookworm-backports' current build (25.0.7-2~bpo12+1 when this was written; mirrors keep only the newest)
(cd "$tmp" && apt-get download -q mesa-vulkan-drivers/bookworm-backports 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
deb=$(ls "$tmp"/mesa-vulkan-drivers_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "lavapipe: could not download mesa-vulkan-drivers from bookworm-backports" >&2; exit 1; }
version=$(dpkg-deb -f "$deb" Version)
rm -rf "$DEST.new"
mkdir -p "$DEST.new"
dpkg -x "$deb" "$DEST.new"
root=$(pwd)
# the packaged ICD file names the library bare (found through the system's library path)
sed "s|\"library_path\": *\"[^\"]*\"|\"library_path\": \"$root/$LIB\"|" \
  "$DEST.new/usr/share/vulkan/icd.d/lvp_icd.json" > "$DEST.new/lvp_icd.json"
grep -q "$root/$LIB" "$DEST.new/lvp_icd.json" || { echo "lavapipe: unexpected ICD file in the package" >&2; exit 1; }
echo "$version" > "$DEST.new/version"
rm -rf "$DEST"
mv "$DEST.new" "$DEST"
echo "lavapipe: $ICD (mesa $version)"
