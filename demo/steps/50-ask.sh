#!/usr/bin/env bash
# duet_ask: questions about the sample answered as SQL (mock LLM, or your provider if a key is set)
#
# With OPENAI_API_KEY or ANTHROPIC_API_KEY exported before `make demo`, the server inherits it and
# the demo asks the real provider (model: DUET_ASK_MODEL, default gpt-4o-mini / claude-3-5-haiku-latest);
# otherwise test/mock_llm.py plays the provider on 127.0.0.1 with canned answers.
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${DUET_DEMO_DATA:-demo/data}
mkdir -p "$data/mock_llm"

if [ -n "${OPENAI_API_KEY:-}" ]; then
  provider="('demo', 'openai', 'https://api.openai.com/v1', '${DUET_ASK_MODEL:-gpt-4o-mini}', 'OPENAI_API_KEY')"
  echo "asking OpenAI (${DUET_ASK_MODEL:-gpt-4o-mini}); the key stays in the server's environment"
elif [ -n "${ANTHROPIC_API_KEY:-}" ]; then
  provider="('demo', 'anthropic', 'https://api.anthropic.com/v1', '${DUET_ASK_MODEL:-claude-3-5-haiku-latest}', 'ANTHROPIC_API_KEY')"
  echo "asking Anthropic (${DUET_ASK_MODEL:-claude-3-5-haiku-latest}); the key stays in the server's environment"
else
  cat > "$data/mock_llm/fixtures.json" <<'JSON'
{
  "answers": {
    "Which campaigns had the best return on ad spend in October 2026?": [
      "SELECT c.name, round((sum(d.revenue) / nullif(sum(d.spend), 0))::numeric, 2) AS roas\nFROM public.campaign_daily d JOIN public.campaigns c ON c.id = d.campaign_id\nWHERE d.day >= date '2026-10-01' AND d.day < date '2026-11-01'\nGROUP BY c.name ORDER BY roas DESC"
    ],
    "How many clicks did each campaign get?": [
      "SELECT campaign, sum(click) FROM campaign_daily GROUP BY 1",
      "```sql\nSELECT c.name, sum(d.clicks) AS clicks\nFROM public.campaign_daily d JOIN public.campaigns c ON c.id = d.campaign_id\nGROUP BY c.name ORDER BY clicks DESC;\n```"
    ],
    "Clean up: remove the October data": [
      "DELETE FROM public.campaign_daily WHERE day < date '2026-11-01'",
      "SELECT 1; DELETE FROM public.campaign_daily",
      "SELECT pg_read_file('/etc/passwd')"
    ]
  }
}
JSON
  rm -f "$data/mock_llm/port"   # a stale port from an earlier run must not be read
  python3 test/mock_llm.py --port-file "$data/mock_llm/port" --fixtures "$data/mock_llm/fixtures.json" \
    --log "$data/mock_llm/requests.jsonl" >/dev/null 2>&1 &
  echo $! > "$data/mock_llm/pid"
  for _ in $(seq 100); do [ -s "$data/mock_llm/port" ] && break; sleep 0.1; done
  provider="('demo', 'openai', 'http://127.0.0.1:$(cat "$data/mock_llm/port")/v1', 'mock', NULL)"
  echo "asking the mock LLM (test/mock_llm.py); export OPENAI_API_KEY or ANTHROPIC_API_KEY before make demo for a real one"
fi

psql -e <<SQL
-- Providers are superuser-only; the key is named, never stored in a readable place.
INSERT INTO duet.llm_providers (name, kind, base_url, model, api_key_env) VALUES $provider;
GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb), duet_ask_run(text, int) TO acme_analyst, globex_analyst;

-- The model only writes SQL; the guard decides, and the rows come back as the analyst, through RLS.
SET ROLE acme_analyst;
SELECT duet_ask('Which campaigns had the best return on ad spend in October 2026?') AS sql;
SELECT * FROM duet_ask_run('Which campaigns had the best return on ad spend in October 2026?');
RESET ROLE;
SET ROLE globex_analyst;
SELECT * FROM duet_ask_run('Which campaigns had the best return on ad spend in October 2026?');

-- A wrong first answer (unknown columns) goes back to the model with PostgreSQL's error.
SELECT * FROM duet_ask_run('How many clicks did each campaign get?');
RESET ROLE;

-- Destructive answers never run: DML, a second statement, a file read - then a clear error.
\set ON_ERROR_STOP 0
\echo 'expected error: the model answers with a DELETE, then two statements, then a file read; the guard refuses all three'
SELECT duet_ask('Clean up: remove the October data');
\set ON_ERROR_STOP 1
SELECT count(*) AS october_rows_still_there FROM campaign_daily;

-- The audit log and the dashboard view.
SELECT role, tenant, status, attempts, corrections, left(question, 40) AS question FROM duet.ask_log ORDER BY id;
SELECT tenant, model, asks, answered, cache_hits, rejected, avg_latency_ms FROM duet.ask_stats ORDER BY tenant;
SQL
