"""Prints template.yaml as CloudFormation sees it after the SAM transform (JSON), offline.

CloudFormation Guard checks that form: the functions' roles, aliases and event source
mappings exist only after the transform. Runs the SAM translator SAM CLI uses (the
`samtranslator` package in .venv) with no AWS call: the only managed policy SAM would
look up is the one it attaches to function roles itself, named here.

Usage: python scripts/sam_transform.py [template.yaml] > transformed.json
"""

import json
import os
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parent.parent


class OfflinePolicies:
    """SAM asks IAM for the ARNs of AWS managed policies by name; these are the ones
    it attaches to this template's roles (execution and X-Ray tracing)."""

    def load(self):
        return {
            name: f"arn:aws:iam::aws:policy/{path}{name}"
            for name, path in [
                ("AWSLambdaBasicExecutionRole", "service-role/"),
                ("AWSXrayWriteOnlyAccess", ""),
                ("AWSXRayDaemonWriteAccess", ""),
            ]
        }


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    template = json.loads(json.dumps(cfn_yaml.load(str(path))))
    # As `sam package` leaves it: local code and definitions become S3 objects.
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "DefinitionUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://artifacts/{logical_id}"
    # The translator reads the region from a boto3 session; any region gives the same
    # resources.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    parameters = {"AWS::AccountId": "123456789012"}
    print(json.dumps(transform(template, parameters, OfflinePolicies()), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
