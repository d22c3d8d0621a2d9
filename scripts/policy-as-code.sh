#!/usr/bin/env bash
# What a deploy would hit on AWS and moto lets through, checked on the template before
# any deploy (part of scripts/test.sh):
#   1. guard/order-saga.guard's own tests: each rule passes a compliant template and
#      fails one that breaks it (guard/tests/);
#   2. the rules on the SAM-transformed template (scripts/sam_transform.py), as
#      CloudFormation receives it;
#   3. cfn-lint with the AWS Serverless Rules (cfn-lint-serverless); a rule that does not
#      fit a resource is ignored in that resource's Metadata with the reason beside it.
# cfn-guard is installed by scripts/bootstrap.sh into .tools/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
guard="$root/.tools/bin/cfn-guard"
transformed="$(mktemp --suffix .json)"
trap 'rm -f "$transformed"' EXIT

"$guard" test --rules-file guard/order-saga.guard --test-data guard/tests/order-saga_tests.yaml >/dev/null \
  || { "$guard" test --rules-file guard/order-saga.guard --test-data guard/tests/order-saga_tests.yaml; exit 1; }
echo "cfn-guard: every rule passes its compliant case and fails its breaking ones"

"$root/.venv/bin/python" scripts/sam_transform.py template.yaml 2>/dev/null >"$transformed"
resources="$("$root/.venv/bin/python" -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("Resources", {})))' "$transformed")"
[ "$resources" -gt 0 ] || { echo "cfn-guard: the transformed template has no resources"; exit 1; }
summary="$("$guard" validate --rules guard/order-saga.guard --data "$transformed" --show-summary all)"
echo "$summary"
# cfn-guard exits 0 when a rule finds nothing to check (SKIP), so an empty template or
# a renamed resource type would pass every rule. Every rule must PASS, except those
# listed here with the reason they have nothing to check in this template.
may_skip=(
  # No function reserves concurrency today; the rule stops one doing so unconditionally.
  no_unconditional_reserved_concurrency
)
rules="$(grep -cE '^rule ' guard/order-saga.guard)"
passed="$(grep -cE '^order-saga\.guard/[a-z_]+ +PASS$' <<<"$summary" || true)"
skipped="$(grep -cE '^order-saga\.guard/[a-z_]+ +SKIP$' <<<"$summary" || true)"
unexpected=()
while read -r rule; do
  [[ " ${may_skip[*]} " == *" $rule "* ]] || unexpected+=("$rule")
done < <(grep -E '^order-saga\.guard/[a-z_]+ +SKIP$' <<<"$summary" | sed -E 's#^order-saga\.guard/([a-z_]+).*#\1#')
[ "${#unexpected[@]}" -eq 0 ] || { echo "cfn-guard: rules with nothing to check: ${unexpected[*]}"; exit 1; }
[ "$(( passed + skipped ))" -eq "$rules" ] \
  || { echo "cfn-guard: of $rules rules $passed passed and $skipped were skipped"; exit 1; }
echo "cfn-guard: $passed of $rules rules evaluated and passed on $resources resources"
"$root/.venv/bin/cfn-lint" --append-rules cfn_lint_serverless.rules -- template.yaml
echo "cfn-lint with the AWS Serverless Rules: no finding"
