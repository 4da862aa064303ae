#!/usr/bin/env bash
# What the tests need besides Rust: the clients of the interop tests (zeep and suds from PyPI;
# PHP's SoapClient and Perl's SOAP::Lite from Debian's php-cli, php-soap and libsoap-lite-perl)
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
missing=()
php -r "exit(class_exists('SoapClient') ? 0 : 1);" >/dev/null 2>&1 || missing+=(php-cli php-soap)
perl -MSOAP::Lite -e 1 >/dev/null 2>&1 || missing+=(libsoap-lite-perl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian's ${missing[*]} (PHP SoapClient and SOAP::Lite interop tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
