#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the crates that hold money, stock, identity and
# delivery logic. Not part of the test command: it builds and tests every mutant of a
# crate against that crate's own tests (the domain's also against the payment
# sandbox's, which hold the payment service's tests); BENCHMARKS.md has the table and
# how long it takes, docs/mutants.md explains every mutant that survives.
# It mutates a scratch worktree of HEAD (target/mutants/tree, its own target dir), so
# the checkout is never touched: commit first. Results: target/mutants/<crate>/.
#   scripts/mutants.sh                 # every crate below
#   scripts/mutants.sh sqs-batch       # one crate
#   scripts/mutants.sh --iterate shop-aws   # only what the last run of it did not catch
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
version="27.1.0"
if ! "$root/.tools/bin/cargo-mutants" --version 2>/dev/null | grep -q "$version"; then
  cargo install --quiet --locked --root "$root/.tools" cargo-mutants --version "$version"
fi
bash scripts/bootstrap.sh
export PATH="$root/.tools/bin:$root/.venv/bin:$PATH"
tree="$root/target/mutants/tree"
if [ -d "$tree" ]; then
  git -C "$tree" checkout --quiet --detach HEAD 2>/dev/null || true
  git -C "$tree" reset --quiet --hard "$(git rev-parse HEAD)"
else
  mkdir -p "$root/target/mutants"
  git worktree add --quiet --detach "$tree" HEAD
fi

iterate=()
if [ "${1:-}" = "--iterate" ]; then
  iterate=(--iterate)
  shift
fi
crates=("$@")
[ "${#crates[@]}" -gt 0 ] || crates=(sqs-batch inventory payments idempotency orders-api shop-domain shop-aws)
for crate in "${crates[@]}"; do
  tests=(--test-package "$crate")
  [ "$crate" = shop-domain ] && tests+=(--test-package payment-sandbox)
  start=$(date +%s)
  # The AWS adapters' tests run against moto server; with-moto.sh starts one for the run.
  mkdir -p "$root/target/mutants/$crate"
  (cd "$tree" && CARGO_TARGET_DIR="$root/target/mutants/target" "$root/scripts/with-moto.sh" \
    cargo mutants --in-place --package "$crate" "${tests[@]}" "${iterate[@]}" \
    --output "$root/target/mutants/$crate" --no-shuffle --colors never) || true
  outcomes="$root/target/mutants/$crate/mutants.out/outcomes.json"
  python3 - "$crate" "$outcomes" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
crate, path, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
o = json.load(open(path))
print(f"{crate:<14} mutants {o['total_mutants']:>4}  caught {o['caught']:>4}  missed {o['missed']:>3}  "
      f"timeout {o['timeout']:>3}  unviable {o['unviable']:>3}  {seconds // 60} min")
PY
done
