#!/usr/bin/env bash
# Alertmanager: an alert reaches a webhook receiver through Prometheus Alertmanager, then resolves
#
# Starts Debian's prometheus-alertmanager and a webhook receiver (test/alert_webhook.py) on
# 127.0.0.1, points duet.alertmanager_urls at it, gives over_budget annotations (templates with
# Duet formulas) and a resolve message, and routes acme's alerts with labels from the Config
# Service. `make demo-stop` (45-alertmanager.stop) stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${DUET_DEMO_DATA:-demo/data}/alertmanager
rm -rf "$data"; mkdir -p "$data/storage"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

python3 test/alert_webhook.py --port-file "$data/hook.port" --log "$data/notifications.jsonl" >/dev/null 2>&1 &
echo $! > "$data/hook.pid"
for _ in $(seq 100); do [ -s "$data/hook.port" ] && break; sleep 0.1; done
am_port=$(free_port)
cat > "$data/alertmanager.yml" <<YML
route:
  receiver: webhook
  group_by: ['alertname', 'tenant']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4h
receivers:
  - name: webhook
    webhook_configs:
      - url: http://127.0.0.1:$(cat "$data/hook.port")/
        send_resolved: true
YML
prometheus-alertmanager --config.file="$data/alertmanager.yml" --storage.path="$data/storage" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= >"$data/alertmanager.log" 2>&1 &
echo $! > "$data/alertmanager.pid"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$am_port/-/ready" >/dev/null && break; sleep 0.2; done
echo "Alertmanager on http://127.0.0.1:$am_port, webhook receiver on 127.0.0.1:$(cat "$data/hook.port")"

# Waits until the receiver got over_budget's notification with this status for campaign 2, prints it.
show_notification() {
  local status=$1
  for _ in $(seq 150); do
    python3 - "$data/notifications.jsonl" "$status" <<'PY' && return 0
import json, sys
path, status = sys.argv[1], sys.argv[2]
try:
    lines = open(path).read().splitlines()
except FileNotFoundError:
    sys.exit(1)
for line in lines:
    doc = json.loads(line)
    for a in doc["alerts"]:
        if a["status"] == status and a["labels"].get("campaign_id") == "2" and a["labels"]["alertname"] == "over_budget":
            print("webhook receiver got (%s, group %s):" % (doc["status"], doc["groupKey"]))
            print(json.dumps({k: a[k] for k in ("status", "labels", "annotations", "startsAt", "endsAt")}, indent=2))
            sys.exit(0)
sys.exit(1)
PY
    sleep 0.2
  done
  echo "no $status notification of over_budget for campaign 2 arrived" >&2; return 1
}

psql -e <<SQL
-- The Alertmanagers come from a superuser-only setting (postgresql.conf or ALTER SYSTEM); the sender
-- in this database follows a reload.
ALTER SYSTEM SET duet.alertmanager_urls = 'http://127.0.0.1:$am_port';
ALTER SYSTEM SET duet.alertmanager_resend_interval = '10s';
SELECT pg_reload_conf();
-- Routing: every alert of acme carries team and receiver labels (Config Service, per tenant).
SET ROLE acme_analyst;
SELECT duet_config_set('alertmanager.labels', '{"team": "acme-ads", "receiver": "webhook"}');
-- Annotations and a resolve message: templates with {column}, {value} and Duet formulas.
SELECT duet_rule_alter('over_budget', '{
  "annotations": {"description": "spend is {round(spend / budget * 100, 1)}% of the budget on {day}",
                  "runbook_url": "https://wiki.example/runbooks/over-budget"},
  "resolve_message": "campaign {campaign_id} is back within budget on {day} ({spend} of {budget})"}');
-- Campaign 2 overspends: the alert fires; the commit wakes the sender.
INSERT INTO campaign_daily (tenant, campaign_id, day, impressions, clicks, spend, revenue, budget)
VALUES ('acme', 2, '2026-11-01', 80000, 1500, 990.00, 1200, 600);
RESET ROLE;
SQL
show_notification firing
echo "Alertmanager's own API (GET /api/v2/alerts) has it with the same labels:"
curl -s "http://127.0.0.1:$am_port/api/v2/alerts?filter=campaign_id%3D%222%22" | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    print("  ", a["labels"]["alertname"], a["status"]["state"], json.dumps(a["labels"], sort_keys=True))'

psql -e <<SQL
-- Delivery state, per Alertmanager, in the tenant's view:
SET ROLE acme_analyst;
SELECT rule, labels, alertmanager_labels, delivery FROM duet.alerts_active WHERE rule = 'over_budget';
-- The next day campaign 2 is within budget: resolved, with the resolve message.
INSERT INTO campaign_daily (tenant, campaign_id, day, impressions, clicks, spend, revenue, budget)
VALUES ('acme', 2, '2026-11-02', 70000, 1400, 450.00, 900, 600);
RESET ROLE;
SQL
show_notification resolved
psql -e <<SQL
-- What the sender saw of each Alertmanager, and duet_doctor()'s check:
SELECT alertmanager, configured, consecutive_failures, alerts_sent, last_success_at IS NOT NULL AS ok FROM duet.alertmanager_status;
SELECT check_name, status, detail FROM duet_doctor() WHERE check_name = 'alertmanager';
SQL
