#!/usr/bin/env bash
# What the tests need besides Rust: the Python SOAP and XML-RPC clients of the interop tests
# (zeep, from PyPI) and a headless browser for the operator page's test (Debian's chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium (operator page test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
