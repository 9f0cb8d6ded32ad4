# Issue 11: direct access. Every duet.* table and view, read and written by each attacker kind,
# and every public function called with another tenant's names and ids: globex's canary never
# shows, and nothing of globex changes.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_acl');
start_mock($node);
$node->safe_psql('postgres', qq{
SET ROLE bob;
SELECT duet_set_tenant('globex');
SELECT duet_ask_feedback('$CANARY question', 'SELECT 1');
RESET ROLE;
INSERT INTO duet.ask_log (tenant, role, question, attempts, corrections, tokens_in, tokens_out, latency_ms, status)
    VALUES ('globex', 'bob', '$CANARY asked', 1, 0, 1, 1, 1, 'ok');
INSERT INTO duet.ask_cache VALUES ('k', 'globex', '$CANARY cached', 'f', 'm', 'SELECT 1');
INSERT INTO duet.kafka_dead_letters (consumer_id, consumer, owner, topic, partition, "offset", value, error)
    SELECT id, name, owner, topic, 0, 0, '$CANARY', 'bad' FROM duet.kafka_consumers WHERE name = 'canary_globex_7731_c';
INSERT INTO duet.kafka_outbox (topic, key, value) VALUES ('globex', 'k', '$CANARY');
});

# Fingerprint of everything of globex, read as the superuser.
my $FP = q{SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
    SELECT 'r' || row_to_json(r)::text x FROM duet.rules r WHERE tenant = 'globex'
    UNION ALL SELECT 'a' || (row_to_json(a)::jsonb - 'last_eval_at')::text FROM duet.alerts a WHERE tenant = 'globex'
    UNION ALL SELECT 't' || row_to_json(t)::text FROM duet.alert_transitions t WHERE tenant = 'globex'
    UNION ALL SELECT 'c' || row_to_json(c)::text FROM duet.config c WHERE tenant = 'globex' OR tenant IS NULL
    UNION ALL SELECT 'h' || row_to_json(h)::text FROM duet.config_history h WHERE tenant = 'globex'
    UNION ALL SELECT 'k' || row_to_json(k)::text FROM duet.kafka_consumers k WHERE owner = 'bob'::regrole
    UNION ALL SELECT 'o' || row_to_json(o)::text FROM duet.kafka_offsets o JOIN duet.kafka_consumers k ON k.id = o.consumer_id WHERE k.owner = 'bob'::regrole
    UNION ALL SELECT 'd' || row_to_json(d)::text FROM duet.kafka_dead_letters d WHERE owner = 'bob'::regrole
    UNION ALL SELECT 'e' || row_to_json(e)::text FROM duet.ask_examples e WHERE tenant = 'globex'
    UNION ALL SELECT 'l' || row_to_json(l)::text FROM duet.ask_log l WHERE tenant = 'globex'
    UNION ALL SELECT 'q' || row_to_json(q)::text FROM duet.ask_cache q WHERE tenant = 'globex'
    UNION ALL SELECT 'm' || row_to_json(m)::text FROM duet.tenant_members m
    UNION ALL SELECT 'n' || row_to_json(n)::text FROM duet.tenants n
    UNION ALL SELECT 'p' || row_to_json(p)::text FROM duet.llm_providers p
    UNION ALL SELECT 'x' || row_to_json(x)::text FROM duet.kafka_outbox x WHERE value LIKE '%CANARY%'
    UNION ALL SELECT 'md' || row_to_json(md)::text FROM duet.metrics md
    UNION ALL SELECT 'cd' || row_to_json(cd)::text FROM duet.config_definitions cd) s};
my $fp = $node->safe_psql('postgres', $FP);

my @rels = split /\n/, $node->safe_psql('postgres', q{
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'duet' AND c.relkind IN ('r', 'v', 'p') ORDER BY 1});
ok(@rels >= 20, 'control: the extension\'s tables and views are listed (' . scalar(@rels) . ')');

for my $r (@ATTACKERS)
{
	for my $rel (@rels)
	{
		my ($rc, $out, $err) = as_role($node, $r, "SELECT * FROM duet.$rel;");
		no_canary($out, "SELECT duet.$rel as $KIND{$r}: nothing of globex");
	}
	my $writes = join("\n", map { "DELETE FROM duet.$_; UPDATE duet.$_ SET tenant = tenant; TRUNCATE duet.$_;" } @rels);
	my ($rc, $out, $err) = as_role($node, $r, $writes
		. "\nINSERT INTO duet.rules (tenant, name, condition, owner, query) VALUES ('globex', 'x', 'true', '$r', 'SELECT 1');"
		. "\nINSERT INTO duet.config (key, tenant, value, version, updated_by) VALUES ('canary_globex_7731.key', 'globex', '1', 99, 'x');"
		. "\nINSERT INTO duet.ask_examples (tenant, question, sql) VALUES ('globex', 'injected', 'SELECT 666');"
		. "\nINSERT INTO duet.tenant_members VALUES ('globex', '$r');");
	is($node->safe_psql('postgres', $FP), $fp, "DELETE/UPDATE/TRUNCATE/INSERT on every duet table as $KIND{$r}: nothing of globex changes");
}

# Every public function with globex's names, as each attacker kind (in its own tenant).
my @calls = (
	[ 'duet_rule_drop', q{SELECT duet_rule_drop('canary_globex_7731_row');} ],
	[ 'duet_rule_alter', q{SELECT duet_rule_alter('canary_globex_7731_row', '{"condition": "true"}');} ],
	[ 'duet_rule_disable/enable', q{SELECT duet_rule_disable('canary_globex_7731_query'); SELECT duet_rule_enable('canary_globex_7731_query');} ],
	[ 'duet_rule_test', q{SELECT duet_rule_test('canary_globex_7731_row', '{"v": 100, "label": "x"}');} ],
	[ 'duet_rule_create on globex\'s table', q{SELECT duet_rule_create('spy', 'true', target => 'globex.metrics', message => '{note}');} ],
	[ 'duet_rule_create reading globex\'s table', q{SELECT duet_rule_create('spyq', 'true', query => 'SELECT note FROM globex.metrics', labels => '{note}');} ],
	[ 'duet_config_get', q{SELECT duet_config_get('canary_globex_7731.key'), duet_config_get_text('canary_globex_7731.key');} ],
	[ 'duet_config_history/at', q{SELECT * FROM duet_config_history('canary_globex_7731.key'); SELECT duet_config_at('canary_globex_7731.key', now());} ],
	[ 'duet_config_effective', q{SELECT * FROM duet_config_effective();} ],
	[ 'duet_config_set/unset/rollback', q{SELECT duet_config_set('canary_globex_7731.key', '"owned"'); SELECT duet_config_unset('canary_globex_7731.key'); SELECT duet_config_rollback('canary_globex_7731.key', 1);} ],
	[ 'duet_config_set_default/define', q{SELECT duet_config_set_default('canary_globex_7731.key', '1'); SELECT duet_config_define('canary_globex_7731.key', '{"type": "string", "maxLength": 1}');} ],
	[ 'duet_set_tenant', q{SELECT duet_set_tenant('globex'); SELECT duet_config_get('canary_globex_7731.key'); SELECT * FROM duet.alerts_active;} ],
	[ 'duet_set_tenant local', q{BEGIN; SELECT duet_set_tenant('globex', true); SELECT * FROM duet.alert_history; COMMIT;} ],
	[ 'SET duet.tenant', q{SET duet.tenant = 'globex'; SELECT * FROM duet.rules; SELECT * FROM duet.config;} ],
	[ 'duet_tenant_add_member/remove_member', q{SELECT duet_tenant_add_member('globex', current_user::regrole); SELECT duet_tenant_remove_member('globex', 'bob');} ],
	[ 'duet_tenant_list/disable', q{SELECT * FROM duet_tenant_list(); SELECT duet_tenant_disable('globex');} ],
	[ 'duet_tenant_protect', q{SELECT duet_tenant_protect('globex.metrics', 'note');} ],
	[ 'duet_kafka_stop/start', q{SELECT duet_kafka_stop('canary_globex_7731_c'); SELECT duet_kafka_start('canary_globex_7731_c');} ],
	[ 'duet_kafka_reset/drop', q{SELECT duet_kafka_reset('canary_globex_7731_c', 'latest'); SELECT duet_kafka_drop('canary_globex_7731_c');} ],
	[ 'duet_kafka_alter/replay', q{SELECT duet_kafka_alter('canary_globex_7731_c', brokers => '127.0.0.1:9', properties => '{"sasl.password": null}'); SELECT duet_kafka_replay('canary_globex_7731_c');} ],
	[ 'duet_kafka_consume into globex\'s table', q{SELECT duet_kafka_consume('spy', 't', 'globex.metrics', '127.0.0.1:1');} ],
	[ 'duet_kafka_consume with a file property', q{SELECT duet_kafka_consume('spy2', 't', 'public.shared_events', '127.0.0.1:1', properties => '{"ssl.ca.location": "/etc/passwd"}');} ],
	[ 'duet_kafka_publish', q{SELECT duet_kafka_publish('globex', 'k', 'forged');} ],
	[ 'duet_kafka_worker_stats', q{SELECT * FROM duet_kafka_worker_stats();} ],
	[ 'duet_ask_feedback', q{SELECT duet_ask_feedback('canary_globex_7731 question', 'SELECT note FROM globex.metrics');} ],
	[ 'duet_ask_prune', q{SELECT duet_ask_prune();} ],
	[ 'duet_rules_evaluate', q{SELECT duet_rules_evaluate('2100-01-01');} ],
	[ 'duet_metric_define/drop', q{SELECT duet_metric_define('ctr', 'clicks'); SELECT duet_metric_drop('ctr');} ],
	[ 'duet_config_history_prune', q{SELECT duet_config_history_prune();} ],
	[ 'internal duet.* functions', q{SELECT duet.duet_rule_drop_apply('globex', 'bob'::regrole::oid, 'canary_globex_7731_row');
SELECT duet.duet_config_apply('set', 'globex', 'canary_globex_7731.key', '1', NULL, 'x');
SELECT duet.duet_alert_observe(r.id, '{}', 'true', NULL, 'forged', NULL, now()) FROM duet.rules r;} ],
	[ 'duet_ask_provider_has_key', q{SELECT duet_ask_provider_has_key('p1');} ],
	[ 'duet_clickhouse_config', q{SELECT * FROM duet_clickhouse_config();} ],
);
for my $r (@ATTACKERS)
{
	for my $c (@calls)
	{
		my ($what, $sql) = @$c;
		my ($rc, $out, $err) = as_role($node, $r, $sql);
		# the attacker's own tenant's rows under globex's key names are its own input, not a leak
		my $own = { nobody => 'none', alice => 'acme', kadmin => 'initech' }->{$r};
		$out = join("\n", grep { !/\|$own\|/ } split /\n/, $out);
		no_canary($out, "$what with globex's names as $KIND{$r}: shows nothing of globex");
		is($node->safe_psql('postgres', $FP), $fp, "$what with globex's names as $KIND{$r}: changes nothing of globex");
	}
}

$node->stop;
done_testing();
