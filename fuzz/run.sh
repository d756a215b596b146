#!/usr/bin/env bash
# Runs the fuzz targets for FUZZ_SECONDS each (default 60). Arguments name targets; none means all.
# `--check` (or no nightly toolchain / cargo-fuzz) only type-checks them on stable, which is cheap enough
# for CI and keeps them from rotting.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
check_only=false
targets=()
for arg in "$@"; do
  case "$arg" in
    --check) check_only=true ;;
    *) targets+=("$arg") ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config authorize_request token_request session_cookie)
fi

if ! $check_only && cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
  for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s"
    cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds"
  done
else
  $check_only || echo "== no nightly toolchain or cargo-fuzz: type-checking the targets only"
  echo "== cargo check of the fuzz targets"
  cargo check --manifest-path fuzz/Cargo.toml --bins
fi
