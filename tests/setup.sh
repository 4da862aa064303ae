#!/usr/bin/env bash
# What the tests need besides Rust: the Python SOAP and XML-RPC clients of the interop tests
# (zeep, from PyPI), PHP's SoapClient for the PHP interop tests (Debian's php-cli and php-soap)
# and a headless browser for the operator page's test (Debian's chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium (operator page test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
if ! php -r "exit(class_exists('SoapClient') ? 0 : 1);" >/dev/null 2>&1; then
  echo "== installing Debian's php-cli and php-soap (PHP SoapClient interop tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q php-cli php-soap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q php-cli php-soap >/dev/null; }
fi
