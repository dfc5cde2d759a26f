#!/usr/bin/env bash
# Re-vendor OpenSeadragon (BSD-3-Clause) into the package from the npm registry, so that
# `mitodet view` fetches nothing at run time. Usage: bash scripts/vendor_openseadragon.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
ver=${1:-6.1.1}
tmp=$(mktemp -d)
(cd "$tmp" && npm pack "openseadragon@$ver" >/dev/null && tar xzf "openseadragon-$ver.tgz")
dst=src/mitodet/viewer/static/openseadragon
rm -rf "$dst" && mkdir -p "$dst"
cp "$tmp/package/build/openseadragon/openseadragon.min.js" "$dst/"
cp -r "$tmp/package/build/openseadragon/images" "$dst/"
cp "$tmp/package/LICENSE.txt" "$dst/LICENSE.txt"
echo "$ver" > "$dst/VERSION"
rm -rf "$tmp"
echo "OpenSeadragon $ver in $dst"
