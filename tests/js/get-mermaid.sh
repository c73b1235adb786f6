#!/usr/bin/env bash
# mermaid.js for the journey-map tests, from its npm package: `npm pack` fetches the package's tarball only
# (the dist/ bundle is self-contained, so none of its dependencies), and mermaid.min.js is kept here as
# tests/js/mermaid/mermaid.min.js (not committed). The tests that render maps skip, with the reason, without it.
set -euo pipefail
version="${MERMAID_VERSION:-12.4.0}"
here="$(cd "$(dirname "$0")" && pwd)"
target="$here/mermaid/mermaid.min.js"
if [ -s "$target" ] && [ "$(cat "$here/mermaid/VERSION" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "mermaid@$version" >/dev/null)
tar -xzf "$scratch/mermaid-$version.tgz" -C "$scratch" package/dist/mermaid.min.js
mkdir -p "$here/mermaid"
mv "$scratch/package/dist/mermaid.min.js" "$target"
echo "$version" > "$here/mermaid/VERSION"
echo "mermaid $version: $target"
