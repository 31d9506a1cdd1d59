#!/usr/bin/env bash
# Instructions per WhatsApp message of a `sapa` binary, counted by callgrind (repeatable whatever
# else the machine is doing; wall-clock benches on a shared 2-core machine are not).
#
#   tools/callgrind-compare.sh LABEL=PATH/TO/sapa [LABEL=PATH …]
#
# For each binary: a fresh data dir with 4 tenants, each one WhatsApp number (the fake Graph API
# of ../shared/bench's bench-stubs) and the demo knowledge base; `sapa serve` under callgrind;
# after a warm-up, three phases of DURATION s (idle, RATE_LOW/s, RATE_HIGH/s of signed webhooks
# from bench-loadgen, open loop, every customer once, no LLM, every reply awaited), each counted
# on its own. Prints the instructions of one message (whole process: ack, ingress, answer, send),
# as the difference of the loaded phases over the difference in messages. Needs the kit:
#   cargo build --release --manifest-path ../shared/bench/Cargo.toml --target-dir target/bench-kit
set -euo pipefail
KIT="${KIT:-target/bench-kit/release}"
RATE_LOW="${RATE_LOW:-4}"
RATE_HIGH="${RATE_HIGH:-12}"
SECONDS_="${DURATION:-20}"
PORT="${PORT:-18300}"
KB="${KB:-../shared/demo/kb}"
[ -x "$KIT/bench-stubs" ] || { echo "no $KIT/bench-stubs (build the kit, see the header)" >&2; exit 2; }
"$KIT/bench-stubs" >/tmp/callgrind-stubs.log 2>&1 &
STUBS=$!
trap 'kill $STUBS 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/stats >/dev/null && break; sleep 0.2; done
for spec in "$@"; do
  label="${spec%%=*}"; bin="$(realpath "${spec#*=}")"
  dir="$(mktemp -d /tmp/callgrind-XXXX)"
  {
    printf '[server]\nbind = "127.0.0.1:%s"\n[conversation]\ndebounce = "0s"\n[demo]\nenabled = false\n' "$PORT"
    for i in 1 2 3 4; do
      printf '[tenants.t%s]\nname = "T%s"\nlocale = "id"\n[tenants.t%s.whatsapp]\nphone_number_id = "10000000000000%s"\n' "$i" "$i" "$i" "$i"
      printf 'app_secret = "bench-app-secret"\naccess_token = "bench"\nverify_token = "bench"\napi_base_url = "http://127.0.0.1:18080"\n' 
    done
  } > "$dir/sapa.toml"
  # Seed the tenants (one start), then their knowledge.
  "$bin" --config "$dir/sapa.toml" --data-dir "$dir/data" serve >"$dir/seed.log" 2>&1 &
  seed=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.2; done
  kill -TERM $seed; wait $seed || true
  for i in 1 2 3 4; do "$bin" --config "$dir/sapa.toml" --data-dir "$dir/data" kb ingest --tenant "t$i" "$KB" >/dev/null; done
  SAPA_TELEMETRY__FILTER=warn valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$bin" --config "$dir/sapa.toml" --data-dir "$dir/data" serve >"$dir/serve.log" 2>&1 &
  vg=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.5; done
  # Warm-up: every code path once (connections, caches, first answer per tenant).
  "$KIT/bench-loadgen" --target "http://127.0.0.1:$PORT/webhooks/whatsapp" --rate 2 --warmup 0 --duration 5 --numbers 4 \
    --customers 1000 --customer-base 628100000000 --drain 120 --reply-timeout 120 --quiet --no-sig-probe >/dev/null
  # Three equal phases, each between a zero and a dump: idle, RATE_LOW/s, RATE_HIGH/s. The
  # background workers' cost per second comes out of the idle phase; the cost of one message is
  # the difference between the two loaded phases over the difference in messages.
  phase() { # NAME RATE FIRST_CUSTOMER
    callgrind_control --zero $vg >/dev/null
    if [ "$2" = 0 ]; then
      sleep "$SECONDS_"
    else
      "$KIT/bench-loadgen" --target "http://127.0.0.1:$PORT/webhooks/whatsapp" --rate "$2" --warmup 0 \
        --duration "$SECONDS_" --numbers 4 --customers 100000 --customer-base "$3" \
        --drain 180 --reply-timeout 180 --no-sig-probe --quiet --json-out "$dir/$1.json" >/dev/null
    fi
    callgrind_control --dump="$1" $vg >/dev/null
    sleep 1
  }
  phase idle 0 0
  phase low "$RATE_LOW" 628200000000
  phase high "$RATE_HIGH" 628300000000
  kill -TERM $vg; wait $vg || true
  ir() { # the dump whose trigger names the phase
    local f; f=$(grep -l "^desc: Trigger: dump $1$" "$dir"/callgrind.out.* | head -n1)
    callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'
  }
  count() { python3 -c "import json; r=json.loads(open('$dir/$1.json').read().splitlines()[-1]); assert r['replies']==r['total_sent_incl_warmup'] and r['duplicates']==0, r; print(r['total_sent_incl_warmup'])"; }
  idle=$(ir idle); low=$(ir low); high=$(ir high); n_low=$(count low); n_high=$(count high)
  echo "$label: idle $((idle / SECONDS_)) instr/s; $n_low msgs: $low; $n_high msgs: $high;" \
    "per message $(( (high - low) / (n_high - n_low) )) instructions  ($dir)"
done
