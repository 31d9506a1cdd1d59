#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) and prints executions and crashes per target.
# Usage: ./run.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(whatsapp_webhook telegram_update webchat_message config ingest_markdown ingest_html ingest_csv ingest_pdf)
fi
# Stable toolchains accept the nightly flags cargo-fuzz passes with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
cargo fuzz build -O || exit 1
mkdir -p logs
printf '%-18s %12s %8s %8s %s\n' target executions exec/s crashes "coverage (cov/ft)"
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  dict=()
  case "$target" in whatsapp_webhook|telegram_update|webchat_message) dict=(-dict=dicts/json.dict) ;; esac
  cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 "${dict[@]}" \
    >"logs/$target.log" 2>&1
  status=$?
  execs=$(grep -m1 'stat::number_of_executed_units' "logs/$target.log" | awk '{print $2}')
  rate=$(grep -m1 'stat::average_exec_per_sec' "logs/$target.log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "logs/$target.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
  crashes=$(ls "artifacts/$target" 2>/dev/null | grep -c -E '^(crash|oom|timeout|leak)-' || true)
  printf '%-18s %12s %8s %8s %s (exit %s)\n' "$target" "${execs:-?}" "${rate:-?}" "$crashes" "${cov:-?}" "$status"
done
