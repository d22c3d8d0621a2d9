#!/usr/bin/env bash
# Installs the tools the tests and the local runtime need into the project's own
# folders (.venv for Python tools, node_modules for npm tools, .tools for cargo-built
# tools) and the Rust targets
# Lambda builds for, and Debian's chromium. Safe to re-run: each step is skipped when
# already done.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$root/.venv"
stamp="$venv/.bootstrap-$(sha256sum scripts/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing scripts/requirements.txt into $venv (moto server, localstripe, cargo-lambda, zig, SAM CLI)" >&2
  # A venv that exists is kept: a changed requirements file installs what is new.
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check --progress-bar on -q -r scripts/requirements.txt
  touch "$stamp"
fi

if [ ! -d node_modules/asl-validator ]; then
  echo "bootstrap: npm ci (asl-validator)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# CloudFormation Guard, AWS's policy-as-code tool (a Rust crate), for
# scripts/policy-as-code.sh: built once into .tools/ (about 2.5 minutes).
guard_version="3.2.1"
if ! "$root/.tools/bin/cfn-guard" --version 2>/dev/null | grep -q "$guard_version"; then
  echo "bootstrap: cargo install cfn-guard $guard_version into .tools/" >&2
  cargo install --quiet --locked --root "$root/.tools" cfn-guard --version "$guard_version"
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
fi

# Headless Chromium for the browser test (a storefront page on another origin places
# an order through `shop local`): Debian's package, the one system package the tests
# need, installed when missing (as root, or with sudo).
if ! command -v chromium >/dev/null 2>&1; then
  echo "bootstrap: apt-get install chromium (headless browser for the CORS test)" >&2
  sudo_if_needed=""
  [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
