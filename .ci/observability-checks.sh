#!/usr/bin/env bash
# Issue 4 in CI, on a real scrape: promtool checks the exposition, the alert rules (syntax and unit
# tests), the example Prometheus config and every PromQL expression of the Grafana dashboard; and every
# metric the dashboard and the rules use must exist in the scrape.
#
# The scrape is what the real binary served after scripted sign-ins (success, denial, plex.tv outage
# and rate limiting, an expired PIN, an exhausted token budget): the test
# observability::scripted_sign_ins_move_the_metrics_by_exactly_what_happened writes it to
# $CARGO_TARGET_DIR/metrics-scrape.txt during `cargo test`. Run after `cargo test` (as .ci/run does) or
# alone; it runs that one test itself when the scrape is missing. Needs promtool (Debian: prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
scrape="$target/metrics-scrape.txt"
dir=examples/observability
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}

if ! command -v promtool >/dev/null; then
  echo "promtool is missing (apt-get install -y prometheus)" >&2
  exit 1
fi
if [ ! -s "$scrape" ]; then
  echo "== no scrape at $scrape yet: running the scripted sign-ins"
  cargo test --test integration observability::scripted_sign_ins -- --quiet
fi
[ -s "$scrape" ] || { echo "the scripted test left no scrape at $scrape" >&2; exit 1; }

echo "== promtool check metrics ($scrape, $(grep -vc '^#' "$scrape") samples)"
promtool check metrics <"$scrape" || fail "the exposition does not pass promtool"

echo "== promtool check rules / test rules ($dir/alerts.yml)"
promtool check rules "$dir/alerts.yml" || fail "alerts.yml"
(cd "$dir" && promtool test rules alerts.test.yml) || fail "alerts.test.yml"

echo "== promtool check config ($dir/prometheus.yml)"
(cd "$dir" && promtool check config prometheus.yml) || fail "prometheus.yml"

echo "== the dashboard's PromQL parses"
# Grafana writes one "expr" per line; its variables become what Grafana would substitute.
dashboard="$dir/plex-oidc-dashboard.json"
{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  n=0
  grep -E '^\s*"expr": ' "$dashboard" |
    sed -E 's/^\s*"expr": "(.*)",?\s*$/\1/; s/\\"/"/g; s/\\\\/\\/g' |
    sed -E 's/\$__rate_interval/5m/g; s/\$__range/1d/g; s/\$instance/.*/g' |
    while IFS= read -r expr; do
      n=$((n + 1))
      echo "      - record: dashboard:expr_$n"
      echo "        expr: |"
      echo "          $expr"
    done
} >"$work/dashboard-rules.yml"
count="$(grep -c 'record:' "$work/dashboard-rules.yml" || true)"
if [ "$count" -lt 10 ]; then
  fail "found only $count expressions in $dashboard"
else
  promtool check rules "$work/dashboard-rules.yml" >/dev/null || {
    promtool check rules "$work/dashboard-rules.yml" || true
    fail "a dashboard expression does not parse"
  }
  echo "  $count expressions"
fi

echo "== every metric in the dashboard and the rules exists in the scrape"
for file in "$dashboard" "$dir/alerts.yml"; do
  names="$(grep -oE '(^|[^a-zA-Z0-9_])(plex_oidc_|process_)[a-z0-9_]+' "$file" | sed -E 's/^[^a-z]//' | sort -u)"
  [ -n "$names" ] || fail "$file uses no plex-oidc metric at all"
  missing=0
  for name in $names; do
    if ! grep -qE "^${name}(\{| )" "$scrape"; then
      fail "$file uses $name, which the scrape does not have"
      missing=$((missing + 1))
    fi
  done
  echo "  $file: $(echo "$names" | wc -l) metrics, $missing missing"
done

if [ "$failed" -ne 0 ]; then
  echo "observability checks failed" >&2
  exit 1
fi
echo "observability checks passed"
