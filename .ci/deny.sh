#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (policy in deny.toml).
#
# Licenses, bans and sources need only the crates themselves and always run. Advisories need the RustSec
# database, a git repository that cargo-deny normally clones from a git host these machines cannot reach;
# so cargo-deny runs offline and checks advisories against a local copy when there is one:
#   - $PLEX_OIDC_ADVISORY_DB may name a checkout of the advisory database, which is copied into place; or
#   - a copy already in cargo-deny's own location (below) is used as it is.
# Without either, advisories are NOT checked, and this script says so rather than passing silently.
# With network access to the database, `cargo deny check` alone does everything.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "== installing cargo-deny"
  cargo install --locked cargo-deny
fi

# cargo metadata (which cargo-deny reads) wants every crate of the lock file, for every target.
cargo fetch --quiet

# cargo-deny's directory for the default database URL.
db="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
if [ ! -d "$db/.git" ] && [ -n "${PLEX_OIDC_ADVISORY_DB:-}" ] && [ -d "$PLEX_OIDC_ADVISORY_DB" ]; then
  mkdir -p "$(dirname "$db")"
  git clone --quiet "$PLEX_OIDC_ADVISORY_DB" "$db"
  # cargo-deny reads the time of the last fetch from FETCH_HEAD.
  git -C "$db" fetch --quiet origin
fi

checks=(bans licenses sources)
if [ -d "$db/.git" ]; then
  checks+=(advisories)
  echo "== advisories: RustSec database as of $(git -C "$db" show -s --format=%cs HEAD) ($db)"
else
  echo "== advisories NOT checked: no RustSec database at $db (set PLEX_OIDC_ADVISORY_DB to a checkout)"
fi

echo "== cargo deny check ${checks[*]}"
cargo deny --offline check --hide-inclusion-graph "${checks[@]}"
