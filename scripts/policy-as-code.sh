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
"$guard" validate --rules guard/order-saga.guard --data "$transformed" --show-summary all
"$root/.venv/bin/cfn-lint" --append-rules cfn_lint_serverless.rules -- template.yaml
echo "cfn-lint with the AWS Serverless Rules: no finding"
