#!/usr/bin/env bash
# Offline checks of the Nix flake, the NixOS module's service logic and the deployment files.
#
# nixpkgs cannot be fetched here, so nothing is built: the flake is checked against a stub nixpkgs
# (nix/tests/stub-nixpkgs), the module's unit comes from a pure function evaluated with builtins only
# (nix/service.nix), and systemd itself verifies the rendered unit. The NixOS VM test
# (checks.<system>.vm) needs a machine that can fetch nixpkgs: `nix flake check` there.
#
# Optional inputs:
#   PLEX_OIDC_NIXPKGS_LIB=/path/to/nixpkgs/lib  also evaluate nix/module.nix with the real module system
#   PLEX_OIDC_BIN=/path/to/plex-oidc            binary for `plex-oidc check` on the rendered settings
#                                               (default: target/debug/plex-oidc when it exists)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

if ! command -v nix-instantiate > /dev/null; then
  echo "nix-checks: installing nix-bin"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin > /dev/null
fi
export NIX_CONFIG="experimental-features = nix-command flakes"
# PyYAML reads the manifests; mypy type-checks the VM test script like the NixOS test driver does.
python3 -c 'import yaml' 2> /dev/null || python3 -m pip install -q pyyaml > /dev/null 2>&1 || true
python3 -m mypy --version > /dev/null 2>&1 || python3 -m pip install -q mypy > /dev/null 2>&1 || true

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
check() {
  local name=$1
  shift
  local log="$work/log"
  if "$@" > "$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/     /' "$log"
  fi
}
skip() {
  echo "skip $1 ($2)"
}

# Files git would hand to the flake: tracked plus untracked-but-not-ignored (no target/).
snapshot="$work/src"
mkdir -p "$snapshot"
git ls-files --cached --others --exclude-standard -z | while IFS= read -r -d '' f; do
  if [ -e "$f" ]; then cp --parents -- "$f" "$snapshot/"; fi
done

parse_all_nix() {
  local f status=0
  while IFS= read -r -d '' f; do
    nix-instantiate --parse "$f" > /dev/null || {
      echo "$f does not parse"
      status=1
    }
  done < <(cd "$snapshot" && find . -name '*.nix' -print0)
  return $status
}
check "every .nix file parses" parse_all_nix

flake_check() (
  cd "$snapshot"
  nix flake check --no-build --no-write-lock-file \
    --override-input nixpkgs "path:$snapshot/nix/tests/stub-nixpkgs" \
    --option substituters '' "path:$snapshot"
)
check "nix flake check --no-build against the stub nixpkgs" flake_check

vm_test_script_compiles() (
  cd "$snapshot"
  nix eval --raw --no-write-lock-file \
    --override-input nixpkgs "path:$snapshot/nix/tests/stub-nixpkgs" \
    "path:$snapshot#checks.x86_64-linux.vm.testScript" > "$work/vm-test.py"
  python3 -m py_compile "$work/vm-test.py"
)
check "the VM test's Python test script compiles" vm_test_script_compiles

vm_test_script_type_checks() {
  cat nix/tests/vm_test_prelude.py "$work/vm-test.py" > "$work/vm-test-typed.py"
  python3 -m mypy --no-implicit-optional --pretty --no-color-output "$work/vm-test-typed.py"
}
if python3 -m mypy --version > /dev/null 2>&1 && [ -s "$work/vm-test.py" ]; then
  check "mypy accepts the VM test script, as the NixOS test driver requires" vm_test_script_type_checks
else
  skip "mypy on the VM test script" "mypy not installed (pip install mypy)"
fi

service_unit() {
  nix-instantiate --eval --strict --json nix/tests/service-unit.nix > "$work/service-unit.json"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["passed"], "assertions on the unit")' \
    "$work/service-unit.json"
}
check "nix/service.nix produces the expected unit (nix/tests/service-unit.nix)" service_unit

# systemd-analyze verify reads the unit offline but needs ExecStart to exist.
mkdir -p "$work/bin"
printf '#!/bin/sh\nexit 0\n' > "$work/bin/plex-oidc"
chmod +x "$work/bin/plex-oidc"
echo '{}' > "$work/config.json"
# ExecReload's kill(1) must exist too (procps on Debian); a stand-in otherwise.
kill_exe=$(type -P kill || true)
if [ -z "$kill_exe" ]; then
  kill_exe="$work/bin/kill"
  printf '#!/bin/sh\nexit 0\n' > "$kill_exe"
  chmod +x "$kill_exe"
fi
render_unit() {
  # $1: file to write, $2: extra Nix arguments for nix/tests/unit-file.nix
  nix eval --impure --raw --expr \
    "import $repo/nix/tests/unit-file.nix ({ exe = \"$work/bin/plex-oidc\"; killExe = \"$kill_exe\"; configFile = \"$work/config.json\"; } // $2)" \
    > "$1"
}
systemd_verify() {
  local dir="$work/units" unit output
  mkdir -p "$dir"
  render_unit "$dir/plex-oidc.service" '{ }'
  mkdir -p "$dir/privileged"
  render_unit "$dir/privileged/plex-oidc.service" \
    '{ settings = import ./nix/tests/example-settings.nix // { listen = "0.0.0.0:443"; }; }'
  for unit in "$dir/plex-oidc.service" "$dir/privileged/plex-oidc.service"; do
    # verify exits 0 on unknown directives and bad values, so any output at all is a failure.
    output=$(systemd-analyze --man=no verify "$unit" 2>&1 | grep -v -e 'Cannot stat /tmp/systemd-temporary' || true)
    if [ -n "$output" ]; then
      echo "$unit:"
      echo "$output"
      return 1
    fi
  done
  # Exposure 1.2 today (a network service); fail if the hardening regresses past 1.5.
  (cd "$dir" && systemd-analyze security --offline=true --threshold=15 plex-oidc.service > "$work/security.txt") || {
    tail -n 40 "$work/security.txt"
    return 1
  }
  grep 'Overall exposure level' "$work/security.txt"
}
if command -v systemd-analyze > /dev/null; then
  check "systemd-analyze verify and security --offline accept the rendered unit" systemd_verify
else
  skip "systemd-analyze" "not installed"
fi

directive_list_is_known_to_systemd() {
  # The allow-list itself must hold no typo: every name must be one this systemd recognises. One unit
  # per name, because an empty value is fatal for some directives and stops the parse of the rest.
  local dir="$work/directives" section name i=0
  mkdir -p "$dir"
  while IFS=. read -r section name; do
    i=$((i + 1))
    printf '[%s]\n%s=\n' "$section" "$name" > "$dir/$i.service"
  done < <(grep -v '^#' nix/tests/systemd-directives.txt)
  [ "$i" -gt 300 ] || {
    echo "only $i directives read"
    return 1
  }
  # verify also fails for units without ExecStart; only unknown names matter here.
  local output
  output=$(systemd-analyze --man=no verify "$dir"/*.service 2>&1 || true)
  if grep -i 'unknown key' <<< "$output"; then
    return 1
  fi
}
if command -v systemd-analyze > /dev/null; then
  check "every name in nix/tests/systemd-directives.txt is a systemd directive" directive_list_is_known_to_systemd
fi

bin=${PLEX_OIDC_BIN:-target/debug/plex-oidc}
rendered_settings_pass_check() (
  # What the module's build-time check does: credentials stand in as placeholder files.
  export CREDENTIALS_DIRECTORY="$work/credentials"
  mkdir -p "$CREDENTIALS_DIRECTORY"
  (umask 077 && printf '%s' build-time-placeholder-secret > "$CREDENTIALS_DIRECTORY/client-grafana")
  python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["settings"], open(sys.argv[2], "w"))' \
    "$work/service-unit.json" "$work/rendered.json"
  "$bin" check --config "$work/rendered.json"
)
if [ -x "$bin" ] && [ -s "$work/service-unit.json" ]; then
  check "plex-oidc check accepts the settings the module renders" rendered_settings_pass_check
else
  skip "plex-oidc check on the rendered settings" "no binary at $bin; build it first"
fi

if [ -n "${PLEX_OIDC_NIXPKGS_LIB:-}" ]; then
  module_eval() {
    nix-instantiate --eval --read-write-mode --strict --json nix/tests/module-eval.nix \
      --arg lib "import $PLEX_OIDC_NIXPKGS_LIB" > "$work/module-eval.json"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["passed"], "assertions on the module")' \
      "$work/module-eval.json"
  }
  check "nix/module.nix evaluates with nixpkgs' module system (nix/tests/module-eval.nix)" module_eval
else
  skip "nix/tests/module-eval.nix" "set PLEX_OIDC_NIXPKGS_LIB to a nixpkgs lib/ directory"
fi

deploy_files_parse() {
  python3 - << 'EOF'
import glob, json, tomllib, yaml
tomllib.load(open("examples/deploy/fly.toml", "rb"))
for path in sorted(glob.glob("examples/deploy/kubernetes/*.yaml")):
    list(yaml.safe_load_all(open(path)))
json.load(open("examples/deploy/config.json"))
json.load(open("examples/observability/plex-oidc-dashboard.json"))
EOF
}
check "examples/deploy/ files parse with real TOML, YAML and JSON parsers" deploy_files_parse

if command -v kubectl > /dev/null; then
  check "kubectl kustomize builds examples/deploy/kubernetes" kubectl kustomize examples/deploy/kubernetes
else
  skip "kubectl kustomize" "kubectl not installed"
fi

echo
echo "nix-checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
