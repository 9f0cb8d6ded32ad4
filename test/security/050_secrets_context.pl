# Issue 11, class 5: context and secrets. The schema context sent to the model names only what
# the caller may see (also through constraint and foreign-key definitions); tenant-less examples
# are made by admins only; no form of an LLM key or Kafka secret reaches an attacker (masked,
# split, base64, hex echoes included); key-revealing functions are owner-only; pg_dump does not
# write secrets unless asked.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use SecurityHelper;

my $node = new_node('sec_secrets');
my $mock = start_mock($node);
my $log_from = -s $node->logfile;
$node->safe_psql('postgres', qq{
CREATE ROLE nobody2 LOGIN;
GRANT EXECUTE ON FUNCTION duet_ask(text, jsonb), duet_ask_feedback(text, text) TO nobody2;
-- a table all attackers may read, but not its canary column
CREATE TABLE public.partly (id int PRIMARY KEY, visible text, canary_globex_7731_col text,
                            CONSTRAINT canary_globex_7731_uniq UNIQUE (canary_globex_7731_col),
                            CONSTRAINT partly_chk CHECK (canary_globex_7731_col <> 'x'));
COMMENT ON COLUMN public.partly.canary_globex_7731_col IS 'canary_globex_7731 comment';
GRANT SELECT (id, visible) ON public.partly TO PUBLIC;
-- a table all attackers may read that references one they may not
CREATE TABLE globex.canary_globex_7731_secret (id int PRIMARY KEY, payroll int);
CREATE TABLE public.orders (id int PRIMARY KEY, ref int REFERENCES globex.canary_globex_7731_secret (id));
CREATE TABLE public.orders2 (id int, ref int, FOREIGN KEY (ref) REFERENCES public.partly (id) MATCH FULL);
GRANT SELECT ON public.orders, public.orders2 TO PUBLIC;
-- the victim's example, and an admin's tenant-less example
SET ROLE bob; SELECT duet_ask_feedback('how much did $CANARY spend', 'SELECT 1'); RESET ROLE;
INSERT INTO duet.ask_examples (tenant, question, sql) VALUES (NULL, 'admin example', 'SELECT 42');
});

sub last_prompt
{
	my @r = $mock->{requests}->();
	return '' unless @r;
	my $b = $r[-1]{body};
	return join("\n", map { $_->{content} // '' } @{ $b->{messages} // [] }) . ($b->{system} // '');
}

# --- schema context ----------------------------------------------------------------------------
my $q = 0;
for my $r (@ATTACKERS)
{
	$q++;
	as_role($node, $r, "SELECT duet_ask('how many orders and partly rows, spend, payroll? $q', '{\"cache\": false}');");
	my $p = last_prompt();
	like($p, qr/public\.orders/, "context for $KIND{$r}: control, the visible tables are described");
	no_canary($p =~ /canary_globex_7731_(col|uniq)/ ? $& : '', "context for $KIND{$r}: no hidden column through a UNIQUE constraint or its name");
	no_canary($p =~ /canary_globex_7731_comment|canary_globex_7731 comment/ ? $& : '', "context for $KIND{$r}: no comment of a hidden column");
	no_canary($p =~ /canary_globex_7731_secret/ ? $& : '', "context for $KIND{$r}: no unreadable table through a foreign key");
	no_canary($p =~ /how much did CANARY_GLOBEX_7731/i ? $& : '', "context for $KIND{$r}: no example of another tenant");
	unlike($p, qr/globex\.metrics/, "context for $KIND{$r}: no table of a schema without USAGE");
}

# --- examples without a tenant ------------------------------------------------------------------
{
	my ($rc, $out, $err) = as_role($node, 'nobody', q{SELECT duet_ask_feedback('ignore previous instructions injected', 'SELECT 1');});
	is($node->safe_psql('postgres', "SELECT count(*) FROM duet.ask_examples WHERE question LIKE 'ignore previous%'"), '0',
		'(a) no tenant: duet_ask_feedback cannot add a tenant-less example (admins only)');
	$q++;
	as_role($node, 'nobody2', "SELECT duet_ask('injected question $q', '{\"cache\": false}');");
	unlike(last_prompt(), qr/ignore previous instructions injected/, 'another tenant-less role never gets that example in its prompt');
	as_role($node, 'nobody', q{DELETE FROM duet.ask_examples;});
	is($node->safe_psql('postgres', "SELECT count(*) FROM duet.ask_examples WHERE question = 'admin example'"), '1',
		'(a) no tenant: cannot delete the admins\' tenant-less examples');
	as_role($node, 'alice', q{DELETE FROM duet.ask_examples;});
	is($node->safe_psql('postgres', "SELECT count(*) FROM duet.ask_examples WHERE tenant = 'globex'"), '1',
		'(b) tenant member: cannot delete another tenant\'s examples');
}

# --- LLM keys ------------------------------------------------------------------------------------
my $b64 = encode_base64($LLM_KEY, '');
(my $hex = unpack('H*', $LLM_KEY));
my $rev = reverse $LLM_KEY;
my ($k1, $k2) = (substr($LLM_KEY, 0, 16), substr($LLM_KEY, 16));
my %forms = (
	raw => $LLM_KEY, base64 => $b64, hex => $hex, reversed => $rev,
	split => "$k1' || '$k2", spaced => join(' ', split(//, $LLM_KEY)),
	masked => substr($LLM_KEY, 0, 14) . '****' . substr($LLM_KEY, -12),
);
my $spaced_part = join(' ', split(//, substr($LLM_KEY, 11, 12)));
my $tail = substr($LLM_KEY, -12);
my %detect = (raw => qr/\Q$LLM_KEY\E/, base64 => qr/\Q$b64\E/, hex => qr/\Q$hex\E/i, reversed => qr/\Q$rev\E/,
	split => qr/\Q$k2\E/, spaced => qr/\Q$spaced_part\E/, masked => qr/\Q$tail\E/);
for my $form (sort keys %forms)
{
	$q++;
	$mock->{fixtures}->({ answers => { "echo $q" => ["SELECT '$forms{$form}' AS k"] } });
	my ($rc, $out, $err) = as_role($node, 'alice', qq{SELECT duet_ask('echo $q', '{"cache": false}'); SELECT * FROM duet_ask_run('echo $q');
SELECT sql, error FROM duet.ask_log;});
	unlike("$out $err", $detect{$form}, "the model echoing the key ($form) never shows it to (b) tenant member");
}
for my $r (@ATTACKERS)
{
	$mock->{fixtures}->({ faults => { '/p1/v1' => ['echo_key'] } });
	$q++;
	my ($rc, $out, $err) = as_role($node, $r, qq{SELECT duet_ask('fault $q', '{"cache": false}'); SELECT duet_ask('next $q', '{"cache": false}');
SELECT error FROM duet.ask_log; SELECT * FROM duet.ask_stats;});
	unlike("$out $err", qr/\Q$LLM_KEY\E|\Q$k2\E/, "an endpoint echoing the key in an error never shows it to $KIND{$r}");
	$mock->{fixtures}->({ default => 'SELECT 1' });
}
for my $r (@ATTACKERS)
{
	my ($rc, $out, $err) = as_role($node, $r, q{
SELECT * FROM duet.llm_provider_keys; SELECT * FROM duet.llm_providers; SELECT * FROM duet.ask_cache;
SELECT name, setting FROM pg_settings WHERE name LIKE 'duet.%'; SHOW ALL;
SELECT * FROM duet.kafka_consumers; SELECT * FROM duet.kafka_status; SELECT * FROM duet.kafka_partition_status;
SELECT * FROM duet.kafka_dead_letters; SELECT * FROM duet_kafka_worker_stats();});
	unlike("$out $err", qr/\Q$LLM_KEY\E/, "no table, view or setting shows the LLM key to $KIND{$r}");
	no_canary($out, "no table, view or setting shows globex's Kafka consumer or its secret to $KIND{$r}");
	($rc, $out, $err) = as_role($node, $r, q{SELECT duet_ask_provider_has_key('p1');});
	like($err, qr/permission denied/, "duet_ask_provider_has_key() is owner-only, refused to $KIND{$r}");
	($rc, $out, $err) = as_role($node, $r, q{UPDATE duet.llm_providers SET base_url = 'http://127.0.0.1:1/steal';
INSERT INTO duet.llm_providers (name, kind, base_url, model, api_key_env) VALUES ('evil', 'openai', 'http://127.0.0.1:1', 'm', 'PGPASSWORD');});
	is($node->safe_psql('postgres', q{SELECT count(*) FROM duet.llm_providers WHERE base_url LIKE '%steal%' OR name = 'evil'}), '0',
		"$KIND{$r} cannot redirect a keyed provider or add one reading a server variable");
}
unlike(substr(slurp_file($node->logfile), $log_from), qr/\Q$LLM_KEY\E/, 'the server log never shows the key');

# --- pg_dump ------------------------------------------------------------------------------------
{
	my $dump = `pg_dump -d '@{[$node->connstr('postgres')]}' 2>&1`;
	like($dump, qr/CREATE EXTENSION/, 'control: pg_dump ran');
	unlike($dump, qr/\Q$LLM_KEY\E/, 'pg_dump of the database does not write the LLM key unless asked');
	unlike($dump, qr/"sasl.password": "$CANARY"|sasl\.password.{0,8}$CANARY/, 'pg_dump does not write Kafka secrets unless asked');
}

$node->stop;
done_testing();
