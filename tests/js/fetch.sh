#!/usr/bin/env bash
# JavaScript tools for the tests, from the npm registry; nothing here is committed (see .gitignore):
# - mermaid.js for the journey-map tests: `npm pack` fetches the mermaid package's tarball only (its dist/ bundle
#   is self-contained, so none of its dependencies) and mermaid.min.js is kept as tests/js/mermaid/mermaid.min.js;
# - yaml-language-server for the editor test of the journey schema (package.json here): tests/js/node_modules.
# The tests that need them skip, with the reason, without them.
set -euo pipefail
version="${MERMAID_VERSION:-12.4.0}"
here="$(cd "$(dirname "$0")" && pwd)"
target="$here/mermaid/mermaid.min.js"
if ! [ -s "$target" ] || [ "$(cat "$here/mermaid/VERSION" 2>/dev/null)" != "$version" ]; then
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  (cd "$scratch" && npm pack --silent "mermaid@$version" >/dev/null)
  tar -xzf "$scratch/mermaid-$version.tgz" -C "$scratch" package/dist/mermaid.min.js
  mkdir -p "$here/mermaid"
  mv "$scratch/package/dist/mermaid.min.js" "$target"
  echo "$version" > "$here/mermaid/VERSION"
fi
echo "mermaid $(cat "$here/mermaid/VERSION"): $target"
(cd "$here" && npm install --silent --no-audit --no-fund --no-package-lock)
echo "yaml-language-server: $here/node_modules/.bin/yaml-language-server"
