#!/usr/bin/env bash
# Cold start of sous (`--help`, `render`): the debug build, the dynamic release build and the installed static
# release build (scripts/install), side by side, with hyperfine. Builds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
swift build --product sous >/dev/null
swift build -c release --product sous >/dev/null
p=$(mktemp -d); trap 'rm -rf "$p"' EXIT
bash scripts/install --prefix "$p" >/dev/null
render="render --recipe recipes/nemotron-3-super-nvfp4.yaml --inventory inventory/two-sparks.yaml"
for args in "--help" "$render"; do
  hyperfine -N --warmup 3 --runs 30 \
    -n debug "$(swift build --show-bin-path)/sous $args" \
    -n release-dynamic "$(swift build -c release --show-bin-path)/sous $args" \
    -n installed-static "$p/bin/sous $args"
done
