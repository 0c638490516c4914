#!/usr/bin/env bash
# The whole test suite (README's second command). Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
