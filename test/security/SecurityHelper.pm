# SecurityHelper — shared setup of the red-team suite (test/security/*.pl, issue 11).
#
# Threat model (issue 11): three attacker kinds, each a LOGIN role with default privileges (temp
# objects, objects in a schema it owns, any GUC it may set, LISTEN/NOTIFY, every public function):
#   nobody  (a) a LOGIN role in no tenant
#   alice   (b) a member of tenant acme
#   kadmin  (c) a member of tenant initech granted duet_kafka_admin (the extension's admin role)
# The victim is tenant globex (member bob, also a Kafka admin); every piece of its data carries
# the canary CANARY_GLOBEX_7731, which must never appear in anything an attacker can read.
#
# Each attacker owns a schema of its own name holding its kit:
#   <r>.log      rows (tag, current_user, session_user, privileged?) written by <r>.mark(tag)
#   <r>.pwned    a sequence <r>.mark() advances when it runs as a superuser or the extension
#                owner (nextval is not transactional: it survives the rollback of the attack)
#   <r>.mark(tag) → true: logs, and when privileged also tries ALTER ROLE <r> SUPERUSER
#   <r>.ran(tag)  → true: like mark, and also takes session advisory lock (7777, hashtext(tag))
#                 so that "it ran at all" survives rolled-back subtransactions in the session
# not_pwned() checks the three concrete outcomes and resets the kit for the next attack.
package SecurityHelper;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(new_node as_role not_pwned ran_as_others reset_kit no_canary wait_until
  attack_sql evil_op evil_fn temp_domain $CANARY @ATTACKERS %KIND);

our $CANARY = 'CANARY_GLOBEX_7731';
our @ATTACKERS = qw(nobody alice kadmin);
our %KIND = (nobody => '(a) no tenant', alice => '(b) tenant member', kadmin => '(c) kafka admin');

sub wait_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

sub kit_sql
{
	my ($r) = @_;
	return qq{
CREATE SCHEMA $r AUTHORIZATION $r;
SET ROLE $r;
CREATE TABLE $r.log (tag text, cu name, su name, priv boolean, at timestamptz DEFAULT clock_timestamp());
GRANT SELECT, INSERT ON $r.log TO PUBLIC;
GRANT USAGE ON SCHEMA $r TO PUBLIC;
CREATE SEQUENCE $r.pwned;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE $r.pwned TO PUBLIC;
CREATE FUNCTION $r.mark(tag text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS \$f\$
DECLARE priv boolean;
BEGIN
    priv := coalesce((SELECT a.rolsuper FROM pg_catalog.pg_roles a WHERE a.rolname OPERATOR(pg_catalog.=) current_user), false)
            OR current_user OPERATOR(pg_catalog.=) (SELECT n.nspowner::pg_catalog.regrole::pg_catalog.name
                                                    FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'duet');
    BEGIN
        INSERT INTO $r.log (tag, cu, su, priv) VALUES (tag, current_user, session_user, priv);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    IF priv THEN
        BEGIN
            PERFORM pg_catalog.nextval('$r.pwned');
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            EXECUTE 'ALTER ROLE $r SUPERUSER';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END IF;
    RETURN true;
END \$f\$;
CREATE FUNCTION $r.ran(tag text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS \$f\$
BEGIN
    PERFORM pg_catalog.pg_advisory_lock(7777, pg_catalog.hashtext(tag));
    RETURN $r.mark(tag);
END \$f\$;
-- labelled IMMUTABLE, yet it writes: the planner folds it with constant arguments
CREATE FUNCTION $r.imm(tag text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS \$f\$
BEGIN
    RETURN $r.ran(tag);
END \$f\$;
CREATE TABLE $r.t (tenant text, v int, label text);
RESET ROLE;
};
}

# new_node(name, conf_lines...) → a started cluster with the extension, tenants, roles, kits and
# the victim's data.
sub new_node
{
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'pg_duet'",
		"max_worker_processes = 32",
		"duet.rules_interval = 0",
		@conf) . "\n");
	$node->start;
	$node->safe_psql('postgres', q{
CREATE EXTENSION pg_duet;
CREATE ROLE nobody LOGIN; CREATE ROLE alice LOGIN; CREATE ROLE kadmin LOGIN; CREATE ROLE bob LOGIN;
GRANT duet_kafka_admin TO kadmin, bob;
-- each tenant's Kafka admin has its own topics (a superuser's grant); no one has another's
INSERT INTO duet.kafka_topic_grants (topic_pattern, grantee, may_publish, may_consume) VALUES
    ('own-*', 'kadmin', true, true), ('topic-*', 'kadmin', true, true), ('kdef', 'kadmin', true, true),
    ('globex-*', 'bob', true, true), ('glive', 'bob', true, true);
SELECT duet_tenant_create('acme'), duet_tenant_create('globex'), duet_tenant_create('initech');
SELECT duet_tenant_add_member('acme', 'alice'), duet_tenant_add_member('globex', 'bob'),
       duet_tenant_add_member('initech', 'kadmin');
-- a table every role may insert into, watched by a row rule of the victim tenant
CREATE TABLE public.shared_events (tenant text, v int, label text);
GRANT SELECT, INSERT ON public.shared_events TO PUBLIC;
GRANT TRIGGER ON public.shared_events TO bob;
-- the victim's own data
CREATE SCHEMA globex AUTHORIZATION bob;
} . join('', map { kit_sql($_) } @ATTACKERS) . qq{
SET ROLE bob;
CREATE TABLE globex.metrics (campaign text, ctr float8, note text);
INSERT INTO globex.metrics VALUES ('$CANARY', 0.001, '$CANARY');
SELECT duet_set_tenant('globex');
SELECT duet_config_set('canary_globex_7731.key', '"$CANARY"');
SELECT duet_rule_create('canary_globex_7731_row', 'v > 10', target => 'public.shared_events',
                        labels => '{label}', message => '$CANARY {label} {v}');
SELECT duet_rule_create('canary_globex_7731_query', 'ctr < 0.01', query => 'SELECT campaign, ctr, note FROM globex.metrics',
                        labels => '{campaign}', message => '$CANARY {note}');
SELECT duet_kafka_consume('canary_globex_7731_c', 'globex-topic', 'globex.metrics', '127.0.0.1:1', 'json',
                          properties => '{"sasl.username": "globex", "sasl.password": "$CANARY"}');
RESET ROLE;
INSERT INTO public.shared_events VALUES ('globex', 100, '$CANARY');
SELECT duet_rules_evaluate();
});
	return $node;
}

# as_role(node, role, sql) → (rc, stdout, stderr); one session, errors do not stop the script.
sub as_role
{
	my ($node, $role, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err, on_error_stop => 0,
		extra_params => [ '-U', $role ]);
	return ($rc, $out, $err);
}

sub reset_kit
{
	my ($node) = @_;
	# the attacker's shadows in its schema go too: each attack starts from the bare kit
	$node->safe_psql('postgres', join('', map {
		"ALTER ROLE $_ NOSUPERUSER; TRUNCATE $_.log; ALTER SEQUENCE $_.pwned RESTART;\n" } @ATTACKERS) . q{
DO $$
DECLARE o record;
BEGIN
    FOR o IN SELECT p.oid::regoperator AS x FROM pg_operator p JOIN pg_namespace n ON n.oid = p.oprnamespace
              WHERE n.nspname IN ('nobody', 'alice', 'kadmin') LOOP
        EXECUTE 'DROP OPERATOR ' || o.x || ' CASCADE';
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS x FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('nobody', 'alice', 'kadmin') AND p.proname NOT IN ('mark', 'ran', 'imm')
                AND p.prokind <> 'a' LOOP
        EXECUTE 'DROP FUNCTION ' || o.x || ' CASCADE';
    END LOOP;
    FOR o IN SELECT p.oid::regprocedure AS x FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname IN ('nobody', 'alice', 'kadmin') AND p.prokind = 'a' LOOP
        EXECUTE 'DROP AGGREGATE ' || o.x || ' CASCADE';
    END LOOP;
END $$;});
}

# not_pwned(node, attacker, name [, extra sql to show on failure]): one assertion that after the
# attack the attacker is still not a superuser, its code never ran as a superuser or the owner
# (no privileged log row, the pwned sequence untouched). Resets the kits for the next attack.
sub not_pwned
{
	my ($node, $r, $name, $attack_err) = @_;
	my $state = $node->safe_psql('postgres', qq{
SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = '$r')::text || '|' ||
       (SELECT is_called FROM $r.pwned)::text || '|' ||
       coalesce((SELECT string_agg(tag || ' as ' || cu, ', ') FROM $r.log WHERE priv), '')});
	my ($super, $called, $rows) = split /\|/, $state, 3;
	my $ok = ok($super eq 'false' && $called eq 'false' && $rows eq '', $name);
	if (!$ok)
	{
		diag("attacker $r: rolsuper=$super, pwned sequence advanced=$called, privileged runs: $rows");
		diag("attack stderr: " . substr($attack_err, 0, 800)) if defined $attack_err && $attack_err ne '';
	}
	reset_kit($node);
	return $ok;
}

# Roles other than the attacker that ran the attacker's code (class 2: A's code as B).
sub ran_as_others
{
	my ($node, $r) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(DISTINCT tag || ' as ' || cu, ', '), '') FROM $r.log WHERE cu <> '$r'");
}

sub no_canary
{
	my ($text, $name) = @_;
	my $ok = unlike($text // '', qr/canary_globex_7731/i, $name);
	diag('leaked: ' . substr($text, 0, 600)) unless $ok;
	return $ok;
}

# --- shadows ------------------------------------------------------------------------------------

# A domain named like a built-in type, in pg_temp (searched first for types), whose CHECK runs the
# attacker's mark().
sub temp_domain
{
	my ($r, $type, $tag) = @_;
	return "CREATE DOMAIN pg_temp.$type AS pg_catalog.$type CHECK ($r.mark('$tag'));\n";
}

my %op_ret = ('=' => 'bool', '<>' => 'bool', '?' => 'bool', '@>' => 'bool',
	'->>' => 'text', '->' => 'jsonb', '||' => 'text', '+' => 'int4', '-' => 'int4', '~' => 'bool',
	'!~' => 'bool');

# An operator shadowing a built-in one, in schema $s (the attacker's, or pg_temp), calling mark().
sub evil_op
{
	my ($r, $s, $op, $l, $rt, $tag) = @_;
	my $ret = $op_ret{$op};
	$ret = 'int8' if $op eq '+' && $l eq 'int8';
	$ret = 'jsonb' if $op eq '||' && $l eq 'jsonb';
	(my $fn = "evil_op_$op\_$l\_$rt") =~ s/[^a-z0-9_]/x/g;
	my ($lc, $rc) = ($l eq 'regclass' ? 'pg_catalog.oid' : "pg_catalog.$l", "pg_catalog.$rt");
	return qq{CREATE FUNCTION $s.$fn(a pg_catalog.$l, b pg_catalog.$rt) RETURNS pg_catalog.$ret LANGUAGE plpgsql AS \$f\$
BEGIN PERFORM $r.mark('$tag'); RETURN a::$lc OPERATOR(pg_catalog.$op) b::$rc; END \$f\$;
CREATE OPERATOR $s.$op (LEFTARG = pg_catalog.$l, RIGHTARG = pg_catalog.$rt, FUNCTION = $s.$fn);
};
}

# A function shadowing a built-in one: evil_fn(r, schema, 'lower(a text) text', 'pg_catalog.lower(a)', tag)
sub evil_fn
{
	my ($r, $s, $sig, $body, $tag) = @_;
	my ($name, $args, $ret) = $sig =~ /^(\w+)\((.*)\)\s+(.+)$/ or die "bad signature $sig";
	my $ret_stmt = $ret eq 'void' ? "PERFORM $body; RETURN;" : "RETURN $body;";
	return qq{CREATE FUNCTION $s.$name($args) RETURNS $ret LANGUAGE plpgsql AS \$f\$
BEGIN PERFORM $r.mark('$tag'); $ret_stmt END \$f\$;
};
}

# --- the mock language model (test/mock_llm.py) -------------------------------------------------
our $LLM_KEY = 'sk-redteam-SECRETKEY-0123456789abcdef';
push @EXPORT, qw(start_mock $LLM_KEY);

# start_mock(node) → { port, fixtures => sub(hashref), requests => sub → list }; registers one
# provider p1 with a stored key, and grants the ask functions to every attacker (as analysts).
sub start_mock
{
	my ($node) = @_;
	require JSON::PP;
	require IPC::Run;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my ($port_file, $fixtures, $reqlog) = ("$dir/mock.port", "$dir/fixtures.json", "$dir/requests.jsonl");
	my $write = sub {
		open my $f, '>', "$fixtures.tmp" or die $!;
		print $f JSON::PP::encode_json($_[0]);
		close $f;
		rename "$fixtures.tmp", $fixtures or die $!;
		usleep(20_000);
	};
	$write->({ default => 'SELECT 1' });
	my $mock = IPC::Run::start([ 'python3', "$ENV{DUET_ROOT}/test/mock_llm.py", '--port-file', $port_file,
		'--fixtures', $fixtures, '--log', $reqlog ]);
	push @SecurityHelper::mocks, $mock;
	for (1 .. 100) { last if -s $port_file; usleep(100_000) }
	my $port = slurp_file($port_file);
	$node->safe_psql('postgres', qq{
INSERT INTO duet.llm_providers (name, kind, base_url, model, priority, timeout_ms, max_retries)
    VALUES ('p1', 'openai', 'http://127.0.0.1:$port/p1/v1', 'mock-gpt', 1, 5000, 0);
INSERT INTO duet.llm_provider_keys VALUES ('p1', '$LLM_KEY');
GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb), duet_ask_run(text, int), duet_ask_feedback(text, text)
    TO nobody, alice, kadmin, bob;
});
	return {
		port => $port,
		fixtures => $write,
		requests => sub {
			open my $f, '<', $reqlog or return ();
			my @r = map { JSON::PP::decode_json($_) } grep { /\S/ } <$f>;
			close $f;
			return @r;
		},
	};
}
our @mocks;
END { local $?; $_->kill_kill for @mocks }

1;
