# Upgrades. For every older version the installation offers (its frozen pg_duet--X.sql; 0.1.0
# first): install it, fill every table through the public API (the rest directly), run
# ALTER EXTENSION pg_duet UPDATE, and check
#   (a) the schema equals a fresh install of the default version in another database: a
#       normalised `pg_dump --schema-only --binary-upgrade` of the extension's objects (binary-upgrade
#       mode dumps extension members, their comments, grants and membership) plus extconfig — so a
#       change to pg_duet/sql/*.sql without the same change in the update script fails here, with
#       the diff;
#   (b) no row was lost: the row count of every table of the extension is the same before and after;
#   (c) the new library serves the old SQL: before UPDATE, with the new .so loaded, the old
#       version's basic calls work (a rolling restart runs the new library on old SQL for a while).
# Then pg_dump of the updated database writes the rows of the user data tables
# (pg_extension_config_dump) but no provider key, and its restore continues every sequence.
# Nothing here names a version's objects, so a new update script needs no edit of this file.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
# No database of this test is in duet.databases (default postgres): no worker writes to them.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_duet'");
$node->start;

my $default = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'pg_duet'});
my @old = split /\n/, $node->safe_psql('postgres', qq{
	SELECT version FROM pg_available_extension_versions
	 WHERE name = 'pg_duet' AND version <> '$default' ORDER BY string_to_array(version, '.')::int[]});
ok((grep { $_ eq '0.1.0' } @old), "0.1.0 is installable next to $default (old versions: @old)");

my $secret = 'sk-upgrade-test-SECRET-4f1c';

# Every table of the extension (members and anything else in schema duet).
my $tables_sql = q{
	SELECT c.oid::regclass FROM pg_class c
	 WHERE c.relkind IN ('r', 'p')
	   AND (c.relnamespace = 'duet'::regnamespace
	        OR EXISTS (SELECT FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
	                      AND d.deptype = 'e' AND e.extname = 'pg_duet'))};

sub row_counts
{
	my ($db) = @_;
	my %n = map { split /\|/ } split /\n/, $node->safe_psql($db, qq{
		SELECT t::text, (xpath('/row/n/text()',
		                       query_to_xml(format('SELECT count(*) AS n FROM %s', t), false, true, '')))[1]::text
		  FROM ($tables_sql) AS x(t) ORDER BY 1});
	return \%n;
}

# Row counts of a fresh install of version (undef: the default one), in a scratch database.
sub seed_counts
{
	my ($version) = @_;
	$node->safe_psql('postgres', 'CREATE DATABASE seed_counts');
	$node->safe_psql('seed_counts', 'CREATE EXTENSION pg_duet' . ($version ? " VERSION '$version'" : ''));
	my $counts = row_counts('seed_counts');
	$node->safe_psql('postgres', 'DROP DATABASE seed_counts');
	return $counts;
}

sub run_ok
{
	my ($cmd, $name) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run($cmd, '>', \$out, '2>', \$err);
	ok($ok, $name) or diag("@$cmd: $err");
	return $out;
}

# The extension's objects as pg_dump writes them in binary-upgrade mode (which dumps extension
# members), without what differs between equal schemas: comments, OIDs and relfrozenxid (the
# binary_upgrade_* calls and the pg_class/pg_attribute fix-ups), sequence values, dropped columns,
# the random \restrict key, and the order of entries. Each entry keeps pg_dump's "Name: ...; Type: ..." title.
sub schema_of
{
	my ($db) = @_;
	my $dump = run_ok(
		[ 'pg_dump', '--schema-only', '--binary-upgrade', '--exclude-schema=app', '-d', $node->connstr($db) ],
		"pg_dump --schema-only of $db");
	my @entries;
	for my $entry (split /^--\n(?=-- Name: )/m, $dump)
	{
		my ($title) = $entry =~ /^-- (Name: .*)$/m or next;
		next if $title =~ /; Type: SEQUENCE SET;/;    # sequence values: data, not schema
		$entry =~ s/^--.*\n//mg;
		$entry =~ s/^UPDATE pg_catalog\.pg_(?:class|attribute|type)\n.*?;\n//msg;
		$entry =~ s/^.*(?:binary_upgrade|pg\.dropped\.).*\n//mg;
		$entry =~ s/^\\(?:un)?restrict .*\n//mg;
		$entry =~ s/,$//mg;
		$entry =~ s/^\s*\n//mg;
		push @entries, "-- $title\n$entry";
	}
	# What pg_extension says beyond its members: the version and the tables pg_dump dumps.
	push @entries, "-- pg_extension\n" . $node->safe_psql($db, q{
		SELECT e.extversion || E'\n' || coalesce(string_agg(format('config %s %L', c::regclass, w), E'\n'
		                                                    ORDER BY c::regclass::text), '')
		  FROM pg_extension e LEFT JOIN LATERAL unnest(e.extconfig, e.extcondition) AS u(c, w) ON true
		 WHERE e.extname = 'pg_duet' GROUP BY e.extversion});
	return join("\n", sort @entries) . "\n";
}

# Fills every table through the public API where there is one, directly where only workers or
# duet_ask (an LLM) write; in schema app, the user's side.
sub fill
{
	my ($db) = @_;
	$node->safe_psql($db, qq{
CREATE SCHEMA app;
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'upgrade_member') THEN CREATE ROLE upgrade_member LOGIN; END IF;
END \$\$;
SELECT duet_tenant_create('acme', 'Acme Inc'), duet_tenant_create('globex');
SELECT duet_tenant_add_member('acme', 'upgrade_member');
SELECT duet_config_define('ads.max_bid', '{"type": "number", "minimum": 0}', 'highest bid');
SELECT duet_config_set_default('ads.max_bid', '1.5');
SELECT duet_config_set_default('ads.max_bid', '2');
SET ROLE upgrade_member;
SELECT duet_config_set('ads.max_bid', '3');
RESET ROLE;
SELECT duet_set_tenant('acme');
CREATE TABLE app.daily (tenant text NOT NULL DEFAULT duet_current_tenant(), campaign_id int, spend float8, budget float8);
SELECT duet_rule_create('over_budget', 'spend > budget', target => 'app.daily', labels => '{campaign_id}',
                        value => 'spend - budget', message => 'campaign {campaign_id} overspent by {value}');
INSERT INTO app.daily (campaign_id, spend, budget) VALUES (1, 150, 100), (2, 10, 100);
CREATE TABLE app.events (n int, _partition int, _offset bigint);
SELECT duet_kafka_consume('upgrade', 'events', 'app.events', '127.0.0.1:1', 'json');
INSERT INTO duet.kafka_offsets (consumer_id, partition, next_offset)
     SELECT id, 0, 42 FROM duet.kafka_consumers WHERE name = 'upgrade';
INSERT INTO duet.kafka_dead_letters (consumer_id, consumer, owner, topic, partition, "offset", value, error)
     SELECT id, name, owner, topic, 0, 41, '\\x7b'::bytea, 'unexpected end of JSON' FROM duet.kafka_consumers WHERE name = 'upgrade';
SELECT duet_kafka_publish('alerts', 'k1', '{"hello": "world"}'::jsonb);
INSERT INTO duet.llm_providers (name, kind, base_url, model) VALUES ('local', 'openai', 'http://127.0.0.1:1/v1', 'test-model');
INSERT INTO duet.llm_provider_keys (provider, api_key) VALUES ('local', '$secret');
SELECT duet_ask_feedback('how many campaigns overspent', 'SELECT count(*) FROM app.daily WHERE spend > budget');
INSERT INTO duet.ask_cache (cache_key, tenant, question, fingerprint, model, sql)
     VALUES (md5('q'), 'acme', 'how many campaigns', md5('schema'), 'test-model', 'SELECT count(*) FROM app.daily');
INSERT INTO duet.ask_log (tenant, role, question, sql, provider, model, attempts, corrections, tokens_in, tokens_out, latency_ms, status)
     VALUES ('acme', current_user, 'how many campaigns', 'SELECT count(*) FROM app.daily', 'local', 'test-model', 1, 0, 10, 5, 12.5, 'ok');
SELECT duet_metric_define('ctr', 'clicks / impressions', 'click-through rate');
});
}

my %upgraded;
for my $v (@old)
{
	(my $db = "upgraded_$v") =~ s/\W/_/g;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION pg_duet VERSION '$v'");
	is($node->safe_psql($db, q{SELECT extversion || ' ' || duet_version() FROM pg_extension WHERE extname = 'pg_duet'}),
		"$v $default", "$v: installed, served by the $default library");
	fill($db);

	# (c) the new library on the old SQL
	is($node->safe_psql($db, q{SELECT duet_calc('round(clicks / impressions, 3)', '{"clicks": 7, "impressions": 9}'::jsonb)}),
		'0.778', "$v: duet_calc works before the update");
	is($node->safe_psql($db, q{SELECT duet_config_get('ads.max_bid')}), '2', "$v: duet_config_get works before the update");
	is($node->safe_psql($db, q{SET ROLE upgrade_member; SELECT duet_config_get('ads.max_bid')}), '3',
		"$v: a member reads its tenant's value before the update");

	my $before = row_counts($db);
	if ($v eq '0.1.0')
	{
		my @empty = grep { $before->{$_} == 0 } sort keys %$before;
		is("@empty", '', "$v: every table has rows before the update");
	}
	$node->safe_psql($db, 'ALTER EXTENSION pg_duet UPDATE');
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'pg_duet'}), $default,
		"$v: ALTER EXTENSION pg_duet UPDATE reaches $default");
	my $after = row_counts($db);
	# Rows the extension itself ships (e.g. built-in config definitions) may come with the update:
	# a table may grow by what a fresh install of the new version has over one of the old.
	my ($seed_old, $seed_new) = (seed_counts($v), seed_counts(undef));
	my @changed = map { "$_: $before->{$_} -> " . ($after->{$_} // 'gone') }
		grep { ($after->{$_} // -1) != $before->{$_} + ($seed_new->{$_} // 0) - ($seed_old->{$_} // 0) }
		sort keys %$before;
	is("@changed", '', "$v: every table keeps its rows (" . scalar(keys %$before) . ' tables)');
	is($node->safe_psql($db, q{SELECT duet_config_get('ads.max_bid')}), '2', "$v: config reads the same after the update");
	$upgraded{$v} = $db;
}

# Roles are cluster-wide: those the update scripts create must be those a fresh install creates.
my $roles_sql = q{SELECT string_agg(rolname, ' ' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'duet\_%'};
my $roles_updated = $node->safe_psql('postgres', $roles_sql);
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pg_duet');
is($node->safe_psql('postgres', $roles_sql), $roles_updated, 'a fresh install creates no role the updates did not');

# (a) the schemas
my $dir = $PostgreSQL::Test::Utils::tmp_check;
my $fresh = schema_of('fresh');
PostgreSQL::Test::Utils::append_to_file("$dir/schema_fresh.sql", $fresh);
for my $v (@old)
{
	my $db = $upgraded{$v};
	my $schema = schema_of($db);
	PostgreSQL::Test::Utils::append_to_file("$dir/schema_$db.sql", $schema);
	my $diff = '';
	IPC::Run::run([ 'diff', '-u', "$dir/schema_fresh.sql", "$dir/schema_$db.sql" ], '>', \$diff);
	ok($schema eq $fresh, "$v updated to $default has the schema of a fresh $default install")
	  or diag("- fresh install, + updated from $v (a change to pg_duet/sql/*.sql needs the same change in the update script):\n"
		  . join("\n", grep { defined } (split /\n/, $diff)[ 0 .. 300 ]));
}

# pg_dump: the user data tables' rows, no key; the restore continues every sequence.
my $src = $upgraded{'0.1.0'};
my $dump = run_ok([ 'pg_dump', '-d', $node->connstr($src) ], "pg_dump of $src");
unlike($dump, qr/\Q$secret\E/, 'pg_dump writes no provider key');
my @config = split /\n/, $node->safe_psql($src, q{
	SELECT c::regclass FROM pg_extension e, unnest(e.extconfig) c
	 WHERE e.extname = 'pg_duet' AND (SELECT relkind FROM pg_class WHERE oid = c) = 'r' ORDER BY 1});
ok(!(grep { $_ eq 'duet.llm_provider_keys' } @config), 'duet.llm_provider_keys is not marked for pg_dump');
my $counts = row_counts($src);
my @missing = grep { $counts->{$_} > 0 && $dump !~ /^COPY \Q$_\E \(.*\) FROM stdin;\n(?!\\\.\n)/m } @config;
is("@missing", '', 'pg_dump writes the rows of every user data table (' . scalar(@config) . ' tables)');
like($dump, qr/^COPY duet\.config .*\n(.*\n)*?ads\.max_bid\t\\N\t2\t/m, '... such as the config default');

$node->safe_psql('postgres', 'CREATE DATABASE restored');
PostgreSQL::Test::Utils::append_to_file("$dir/dump_$src.sql", $dump);
run_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', "$dir/dump_$src.sql" ],
	'the dump restores');
my $restored = row_counts('restored');
my @lost = map { "$_: $counts->{$_} -> $restored->{$_}" } grep { $restored->{$_} != $counts->{$_} } @config;
is("@lost", '', 'the restored database has the rows of every user data table');
is($restored->{'duet.llm_provider_keys'}, '0', 'and no provider key');
my @behind = split /\n/, $node->safe_psql('restored', q{
	SELECT format('%s.%s: %s', t, a.attname, s)
	  FROM pg_extension e, unnest(e.extconfig) t, pg_attribute a,
	       LATERAL pg_get_serial_sequence(t::regclass::text, a.attname) s
	 WHERE e.extname = 'pg_duet' AND a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped AND s IS NOT NULL
	   AND (xpath('/row/behind/text()', query_to_xml(
	          format('SELECT coalesce(max(%I), 0) > (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s) AS behind FROM %s',
	                 a.attname, s, t::regclass), false, true, '')))[1]::text::boolean});
is("@behind", '', 'every sequence of a dumped table continues after the restore');
is($node->safe_psql('restored', q{SELECT duet_config_set_default('ads.max_bid', '4') > 2}), 't',
	'config writes continue in the restored database');

$node->stop;
done_testing();
