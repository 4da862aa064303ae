#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and prints, per target, the executions and whether
# it crashed. Needs the nightly toolchain and cargo-fuzz (installed here when missing):
#
#   fuzz/run.sh              # every target, 60 s each
#   fuzz/run.sh 600 wql      # one target, 10 minutes
#
# Corpora start from the project's fixtures (fuzz/corpus/<target>, not committed); crashes are
# written to fuzz/artifacts/<target>/ and make this script exit non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(soap_envelope xmlrpc_call winstrom_document wql mapping compare json_list)
fi

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked

seed() { # target, files...
  local dir="fuzz/corpus/$1"
  shift
  mkdir -p "$dir"
  for f in "$@"; do
    [ -f "$f" ] && cp "$f" "$dir/seed-$(echo "$f" | tr '/' '_')"
  done
}
seed soap_envelope fixtures/soap/*/*.xml
seed xmlrpc_call fixtures/xmlrpc/*.xml fixtures/xmlrpc/*/*.xml
seed winstrom_document fixtures/winstrom/*/*.xml fixtures/winstrom/*/*.json
seed compare fixtures/soap/*/*.expected.xml fixtures/winstrom/*/*.expected.json
mkdir -p fuzz/corpus/wql fuzz/corpus/mapping fuzz/corpus/json_list
printf "%s" '{"items":[{"id":1,"p":12.50,"n":"A \"b\"","x":[1,{"y":null}]},7],"total":2}' > fuzz/corpus/json_list/seed-1
printf "%s" '{"data":{"items":[{"k\u0065y":"\u00e9"}]},"total":-1,"data":[]}' > fuzz/corpus/json_list/seed-2
printf "%s" "typVztahuK in ('typVztahu.obchodni', 'typVztahu.ostatni') and (nazev begins 'A' or not kod = 'X')" > fuzz/corpus/wql/seed-1
printf "%s" "hladina = 1 and cenaZakl between 10.5 and 20 and datum >= now() and stitky is not empty" > fuzz/corpus/wql/seed-2
printf "%s" '[{"items": {"$each": "$.p", "$map": {"id": "@.id", "o": {"$first": ["@.x", "@"]}}}}, {"p": [{"id": 1, "x": null}, {"id": 2}]}]' > fuzz/corpus/mapping/seed-1
printf "%s" $'/v1/vouchers/{$.v}/payments\n{"v": "FT/1 2"}' > fuzz/corpus/mapping/seed-2

cargo +nightly fuzz build >/dev/null 2>&1 || { echo "fuzz build failed: run 'cargo +nightly fuzz build'"; exit 2; }

status=0
printf '%-20s %12s %8s\n' target executions crashes
for t in "${targets[@]}"; do
  log="fuzz/artifacts/$t.log"
  mkdir -p "fuzz/artifacts/$t"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
  rc=$?
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -n 1)
  crashes=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
  printf '%-20s %12s %8s\n' "$t" "${runs:-?}" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then status=1; fi
done
exit $status
