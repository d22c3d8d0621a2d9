"""Security review of template.yaml; exits 1 and names every violation.

Checks (see docs/security.md):
  iam        every action a role is granted is used, every call made is granted:
             functions from the calls they made during the test run (the emulator's
             call log, see local/moto_server.py), the state machine from its ASL
             definition; both against docs/security.md's table.
  wildcards  no `*` in an action, no `Resource: "*"` unless listed in
             security/suppressions.yaml with the reason AWS gives no resource type.
  encryption every table, queue, topic and secret is encrypted at rest.
  auth       every API route requires the JWT authorizer on every stage and with either
             issuer (the stack's Cognito user pool, or a JwtIssuer given), and the
             authorizer then has an issuer and an audience.
  secrets    no secret in the template (literal keys, passwords, tokens in env vars or
             parameter defaults) or in tracked files (AWS keys, private keys, live keys).
  checkov    every failed checkov check is suppressed in security/suppressions.yaml
             with a reason, and every suppression still matches a failure.

Usage: python scripts/security_review.py --calls CALL_LOG --checkov CHECKOV_JSON
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
SUPPRESSIONS = ROOT / "security" / "suppressions.yaml"


def load_template():
    return cfn_yaml.load(str(ROOT / "template.yaml"))


# `${Resource}` or `${Resource.Attribute}` in a Fn::Sub string; `${AWS::...}` is not one.
SUB_REF = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}")


def logical_ids(value):
    """The resources a policy's Resource entry names: Ref/GetAtt targets or '*'."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item == "*":
            out.append("*")
        elif isinstance(item, dict) and "Ref" in item:
            out.append(item["Ref"])
        elif isinstance(item, dict) and "Fn::GetAtt" in item:
            out.append(item["Fn::GetAtt"][0])
        elif isinstance(item, dict) and isinstance(item.get("Fn::Sub"), str) \
                and len(SUB_REF.findall(item["Fn::Sub"])) == 1:
            # One resource in an ARN pattern: a table's index (`${T.Arn}/index/I`,
            # named T/index/I) or the executions of a machine (`...:execution:${M.Name}:*`).
            ref = SUB_REF.search(item["Fn::Sub"])
            rest = item["Fn::Sub"][ref.end():]
            out.append(ref.group(1) + (rest if rest.startswith("/index/") else ""))
        else:
            out.append(f"unnamed:{json.dumps(item)}")
    return out


def grants(template):
    """{(principal, action, resource logical id or '*')} for every Allow statement."""
    out = set()
    for lid, res in template["Resources"].items():
        if res["Type"] not in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            continue
        for policy in res["Properties"].get("Policies", []):
            for st in policy.get("Statement", []) if isinstance(policy, dict) else []:
                if st.get("Effect") != "Allow":
                    continue
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                for action in actions:
                    for resource in logical_ids(st["Resource"]):
                        out.add((lid, action, resource))
    return out


# The resource type each service's calls name.
CALL_TARGETS = {
    "dynamodb": "AWS::DynamoDB::Table",
    "sqs": "AWS::SQS::Queue",
    "events": "AWS::Events::EventBus",
    "states": "AWS::Serverless::StateMachine",
    "secretsmanager": "AWS::SecretsManager::Secret",
}


def resource_names(template, kind):
    """Physical-name suffix -> logical id for resources of one type, as the local
    runtime names them (`<stack>-<LogicalId>`, or a `Name: ${AWS::StackName}-x`)."""
    out = {}
    for lid, res in template["Resources"].items():
        if res["Type"] != kind:
            continue
        out[lid] = lid
        name = res.get("Properties", {}).get("Name")
        if isinstance(name, dict) and "Fn::Sub" in name and isinstance(name["Fn::Sub"], str):
            out[name["Fn::Sub"].replace("${AWS::StackName}-", "")] = lid
    return out


def observed_calls(template, log_path):
    """{(function logical id, action, resource logical id)} from the emulator's call log."""
    binaries = {
        res["Metadata"]["BuildProperties"]["Binary"]: lid
        for lid, res in template["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
    }
    # Suffix -> logical id per service, longest suffix first so `OrdersQueue` is not
    # taken for the end of `ExpressOrdersQueue`'s name.
    names = {service: sorted(resource_names(template, kind).items(), key=lambda kv: -len(kv[0]))
             for service, kind in CALL_TARGETS.items()}
    calls, problems = set(), []
    # The log holds one line per call; each distinct line is resolved once.
    for line in sorted(set(Path(log_path).read_text(encoding="utf-8").splitlines())):
        call = json.loads(line)
        function = binaries.get(call["function"])
        if function is None:
            problems.append(f"calls log names an unknown function {call['function']}")
            continue
        resource = call.get("resource")
        if resource == "task-token":
            # A task token names no resource, and SendTask* support no resource-level
            # permissions (Service Authorization Reference): IAM checks them on "*".
            targets = ["*"]
        else:
            service = call["action"].split(":", 1)[0]
            base, index, index_name = (resource or "").partition("/index/")
            lid = next((lid for suffix, lid in names.get(service, [])
                        if base and base.endswith("-" + suffix)), None)
            targets = [lid + index + index_name] if lid else [f"unknown:{resource}"]
        for target in targets:
            calls.add((function, call["action"], target))
    return calls, problems


def state_machine_calls(template):
    """{(machine, action, resource)} the ASL's service integrations make."""
    out = set()
    for lid, res in template["Resources"].items():
        if res["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = res["Properties"]
        subs = {k: logical_ids(v)[0] for k, v in props.get("DefinitionSubstitutions", {}).items()}
        definition = json.loads((ROOT / props["DefinitionUri"]).read_text(encoding="utf-8"))

        def named(text):
            match = re.fullmatch(r"\$\{(\w+)\}", text or "")
            return subs.get(match.group(1), f"unknown:{text}") if match else f"unknown:{text}"

        def walk(states):
            for state in states.values():
                arn = state.get("Resource", "")
                match = re.fullmatch(r"arn:aws:states:::(\w+):(\w+)(\.\w+)?", arn)
                if state.get("Type") == "Task" and match:
                    service, api = match.group(1), match.group(2)
                    action = f"{service}:{api[0].upper()}{api[1:]}"
                    params = state.get("Parameters", {})
                    targets = [params.get("QueueUrl") or params.get("TableName")]
                    targets += [e.get("EventBusName") for e in params.get("Entries", [])]
                    for target in filter(None, targets):
                        out.add((lid, action, named(target)))
                for branch in state.get("Branches", []):
                    walk(branch["States"])
                for key in ("Iterator", "ItemProcessor"):
                    if key in state:
                        walk(state[key]["States"])

        walk(definition["States"])
    return out


def documented(template):
    """{(principal, action, resource)} from docs/security.md's IAM table."""
    rows = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] in template["Resources"]:
            for action in cells[1].split(","):
                rows.add((cells[0], action.strip().strip("`"), cells[2]))
    return rows


def check_iam(template, log_path, suppressions):
    problems = []
    granted = grants(template)
    wildcard_ok = {(s["principal"], a) for s in suppressions.get("wildcard_resources", [])
                   for a in s["actions"]}
    # Wildcard grants a function's calls show (the task-token calls); the others are
    # made by AWS on the principal's behalf (log delivery) and never appear in the log.
    wildcard_called = {(s["principal"], a) for s in suppressions.get("wildcard_resources", [])
                       if s.get("called", False) for a in s["actions"]}
    for principal, action, resource in sorted(granted):
        if "*" in action:
            problems.append(f"{principal}: wildcard action {action}")
        if resource == "*" and (principal, action) not in wildcard_ok:
            problems.append(f"{principal}: {action} on Resource \"*\" (name the resource, or "
                            "list it under wildcard_resources with the reason)")
        if resource.startswith("unnamed:"):
            problems.append(f"{principal}: {action} on {resource[8:]} (use !Ref or !GetAtt)")
    calls, log_problems = observed_calls(template, log_path)
    problems += log_problems
    calls |= state_machine_calls(template)
    needed = {g for g in granted if g[2] != "*" or (g[0], g[1]) in wildcard_called}
    for call in sorted(calls - needed):
        problems.append("call not granted: {} makes {} on {}".format(*call))
    for grant in sorted(needed - calls):
        problems.append("grant never used: {} is allowed {} on {} but never calls it "
                        "in the test run".format(*grant))
    doc = documented(template)
    for row in sorted(granted - doc):
        problems.append("grant missing from docs/security.md: {} {} {}".format(*row))
    for row in sorted(doc - granted):
        problems.append("docs/security.md lists a grant the template lacks: {} {} {}".format(*row))
    return problems, len(calls), len(granted)


def check_encryption(template):
    problems = []
    for lid, res in template["Resources"].items():
        props = res.get("Properties", {})
        kind = res["Type"]
        if kind == "AWS::DynamoDB::Table" and props.get("SSESpecification", {}).get("SSEEnabled") is not True:
            problems.append(f"{lid}: table without SSESpecification.SSEEnabled: true")
        if kind == "AWS::SQS::Queue" and props.get("SqsManagedSseEnabled") is not True \
                and "KmsMasterKeyId" not in props:
            problems.append(f"{lid}: queue without SqsManagedSseEnabled or KmsMasterKeyId")
        if kind == "AWS::SNS::Topic" and "KmsMasterKeyId" not in props:
            problems.append(f"{lid}: topic without KmsMasterKeyId")
        if kind == "AWS::SecretsManager::Secret" and "SecretString" in props:
            problems.append(f"{lid}: secret value written in the template")
    return problems


def evaluate(expr, template, params):
    """A template value with conditions evaluated for the given parameter values."""
    if isinstance(expr, dict) and len(expr) == 1:
        (key, arg), = expr.items()
        if key == "Ref":
            return params.get(arg, {"Ref": arg})
        if key == "Fn::If":
            chosen = arg[1] if condition(arg[0], template, params) else arg[2]
            return evaluate(chosen, template, params)
        if key == "Fn::Equals":
            return evaluate(arg[0], template, params) == evaluate(arg[1], template, params)
        if key == "Fn::Not":
            return not evaluate(arg[0], template, params)
        if key == "Condition":
            return condition(arg, template, params)
    return expr


def condition(name, template, params):
    return bool(evaluate(template["Conditions"][name], template, params))


def referenced(value):
    """Every resource or parameter a value names through Ref or ${...} in Fn::Sub."""
    if isinstance(value, list):
        return [r for item in value for r in referenced(item)]
    if not isinstance(value, dict):
        return []
    found = [value["Ref"]] if isinstance(value.get("Ref"), str) else []
    if isinstance(value.get("Fn::Sub"), str):
        found += re.findall(r"\$\{([A-Za-z0-9]+)[.}]", value["Fn::Sub"])
    return found + [r for key, item in value.items() if key != "Ref" for r in referenced(item)]


def check_auth(template):
    problems = []
    stage = template["Parameters"]["Stage"]
    routes = {lid: r for lid, r in template["Resources"].items()
              if r["Type"] == "AWS::ApiGatewayV2::Route"}
    apis = [lid for lid, r in template["Resources"].items()
            if r["Type"] in ("AWS::Serverless::HttpApi", "AWS::Serverless::Api")]
    problems += [f"{lid}: implicit SAM API; declare routes explicitly" for lid in apis]
    if not routes:
        problems.append("no API routes found")

    def active(lid, params):
        res = template["Resources"].get(lid or "")
        return res is not None and ("Condition" not in res or condition(res["Condition"], template, params))

    for value in stage["AllowedValues"]:
        for issuer in ("", "https://idp.example.org/"):
            params = {"Stage": value, "JwtIssuer": issuer, "JwtAudience": "api" if issuer else ""}
            source = "a given issuer" if issuer else "the stack's user pool"
            where = f"stage {value}, {source}"
            for lid, route in routes.items():
                props = route["Properties"]
                # A webhook whose function verifies each request's signature (policy
                # as code allows only Stripe's: guard/order-saga.guard).
                verifier = route.get("Metadata", {}).get("SignatureVerifiedBy")
                if verifier is not None:
                    if props.get("AuthorizationType") != "NONE" or verifier not in template["Resources"]:
                        problems.append(f"{lid}: signed by {verifier}, which is not a function here")
                    continue
                kind = evaluate(props.get("AuthorizationType", "NONE"), template, params)
                if kind != "JWT":
                    problems.append(f"{lid}: no JWT authorizer on {where}")
                    continue
                authorizer = evaluate(props.get("AuthorizerId"), template, params)
                target = authorizer.get("Ref") if isinstance(authorizer, dict) else None
                if not active(target, params):
                    problems.append(f"{lid}: authorizer missing on {where}")
                    continue
                jwt = template["Resources"][target]["Properties"].get("JwtConfiguration", {})
                found_issuer = evaluate(jwt.get("Issuer", ""), template, params)
                audience = evaluate(jwt.get("Audience", []), template, params)
                if found_issuer in ("", None) or not audience or "" in audience:
                    problems.append(f"{target}: no issuer or audience on {where}")
                refs = [r for r in referenced([found_issuer, audience]) if r in template["Resources"]]
                problems += [f"{target}: {r} does not exist on {where}" for r in refs if not active(r, params)]
    return problems


SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.I)
SECRET_TEXT = [
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "AWS access key id"),
    (re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |)PRIVATE KEY-----"), "private key"),
    (re.compile(r"\b(?:sk|rk)_live_[0-9A-Za-z]{10,}"), "live payment provider key"),
    (re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"), "AWS secret key"),
]


def check_secrets(template):
    problems = []
    for lid, res in template["Resources"].items():
        env = res.get("Properties", {}).get("Environment", {}).get("Variables", {})
        for name, value in env.items():
            if SECRET_NAME.search(name) and isinstance(value, str):
                problems.append(f"{lid}: environment variable {name} holds a literal")
            if isinstance(value, dict) and "Ref" in value:
                target = template["Resources"].get(value["Ref"], {})
                if SECRET_NAME.search(name) and target.get("Type") != "AWS::SecretsManager::Secret":
                    problems.append(f"{lid}: {name} should name a Secrets Manager secret")
    for name, param in template.get("Parameters", {}).items():
        if SECRET_NAME.search(name) and not param.get("NoEcho"):
            problems.append(f"parameter {name} looks like a secret; pass the secret's ARN instead")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        path = ROOT / rel
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for pattern, what in SECRET_TEXT:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{rel}:{line}: {what}")
    return problems


def check_checkov(report_path, suppressions):
    problems = []
    reports = json.loads(Path(report_path).read_text(encoding="utf-8"))
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(c["check_id"], c["resource"]) for r in reports
              for c in r.get("results", {}).get("failed_checks", [])]
    passed = sum(len(r.get("results", {}).get("passed_checks", [])) for r in reports)
    used = set()
    for check_id, resource in failed:
        lid = resource.split(".", 1)[1]
        match = next((i for i, s in enumerate(suppressions.get("checkov", []))
                      if s["id"] == check_id and lid in s["resources"]), None)
        if match is None:
            problems.append(f"checkov {check_id} failed for {resource} and is not suppressed")
        else:
            used.add((match, lid))
    for i, s in enumerate(suppressions.get("checkov", [])):
        if len(s.get("reason", "").split()) < 12:
            problems.append(f"suppression {s['id']}: the reason must say why, specifically")
        for lid in s["resources"]:
            if (i, lid) not in used:
                problems.append(f"suppression {s['id']} for {lid} matches no failed check")
    return problems, passed, len(failed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", required=True, help="the emulator's call log (JSON lines)")
    parser.add_argument("--checkov", required=True, help="checkov's JSON report of template.yaml")
    args = parser.parse_args()
    template = load_template()
    suppressions = yaml.safe_load(SUPPRESSIONS.read_text(encoding="utf-8"))
    iam, calls, granted = check_iam(template, args.calls, suppressions)
    checkov, passed, failed = check_checkov(args.checkov, suppressions)
    sections = {
        "iam": iam,
        "encryption": check_encryption(template),
        "auth": check_auth(template),
        "secrets": check_secrets(template),
        "checkov": checkov,
    }
    print(f"iam: {granted} grants, {calls} distinct calls made (functions: test run; "
          "state machine: ASL)")
    print(f"checkov: {passed} passed, {failed} failed, all failures suppressed with a reason"
          if not checkov else f"checkov: {passed} passed, {failed} failed")
    bad = 0
    for name, problems in sections.items():
        print(f"{name}: {'ok' if not problems else f'{len(problems)} violation(s)'}")
        for problem in problems:
            print(f"  - {problem}")
        bad += len(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
