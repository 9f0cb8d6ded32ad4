-- ask_guard: model output is untrusted. Each adversarial answer below must be refused by the
-- guard (duet_ask_guard returns the reason, NULL means "would run"), and canaries prove that
-- checking executed nothing: no row written, no sequence advanced, no setting changed.
CREATE TABLE ask_canary (n int);
INSERT INTO ask_canary VALUES (42);
CREATE SEQUENCE ask_seq;
SELECT nextval('ask_seq');
CREATE FUNCTION ask_evil_volatile() RETURNS int LANGUAGE sql VOLATILE
    AS $$ INSERT INTO ask_canary VALUES (666) RETURNING n $$;
CREATE FUNCTION ask_evil_definer() RETURNS int LANGUAGE sql STABLE SECURITY DEFINER
    AS $$ SELECT 1 $$;
CREATE FUNCTION ask_evil_op(int, int) RETURNS int LANGUAGE sql VOLATILE
    AS $$ INSERT INTO ask_canary VALUES (667) RETURNING n $$;
CREATE OPERATOR ### (FUNCTION = ask_evil_op, LEFTARG = int, RIGHTARG = int);
CREATE DOMAIN ask_sleepy_int AS int CHECK (pg_sleep(5) IS NOT NULL OR VALUE > 0);
CREATE DOMAIN ask_sleepy_int2 AS ask_sleepy_int CHECK (VALUE < 100);
CREATE DOMAIN ask_positive AS int CHECK (VALUE > 0);
CREATE VIEW ask_sleepy_view AS SELECT pg_sleep(5)::text AS s, nextval('ask_seq') AS v;
PREPARE ask_p AS SELECT 1;
SET work_mem = '4MB';

CREATE TEMP TABLE ask_attacks (id serial, answer text);
INSERT INTO ask_attacks (answer) VALUES
 ($q$DELETE FROM ask_canary$q$),
 ($q$INSERT INTO ask_canary VALUES (1)$q$),
 ($q$UPDATE ask_canary SET n = 2$q$),
 ($q$DROP TABLE ask_canary$q$),
 ($q$TRUNCATE ask_canary$q$),
 ($q$CREATE TABLE ask_evil (x int)$q$),
 ($q$ALTER TABLE ask_canary ADD COLUMN y int$q$),
 ($q$GRANT ALL ON ask_canary TO PUBLIC$q$),
 ($q$SELECT 1; DELETE FROM ask_canary$q$),
 ($q$SELECT n FROM ask_canary; INSERT INTO ask_canary VALUES (9);$q$),
 ($q$COMMIT; INSERT INTO ask_canary VALUES (10)$q$),
 ($q$BEGIN; DELETE FROM ask_canary; COMMIT$q$),
 ($q$SELECT 1 -- just a comment
; DELETE FROM ask_canary$q$),
 ($q$SELECT 1 /* ; */ ; /* */ DROP TABLE ask_canary -- $q$),
 ($q$WITH d AS (DELETE FROM ask_canary RETURNING *) SELECT * FROM d$q$),
 ($q$WITH i AS (INSERT INTO ask_canary VALUES (12) RETURNING n) SELECT n FROM i$q$),
 ($q$WITH x AS (SELECT 1), u AS (UPDATE ask_canary SET n = 0 RETURNING n) SELECT * FROM x$q$),
 ($q$SELECT * INTO ask_evil2 FROM ask_canary$q$),
 ($q$SELECT * FROM ask_canary FOR UPDATE$q$),
 ($q$SELECT * FROM ask_canary FOR SHARE SKIP LOCKED$q$),
 ($q$SELECT 1 WHERE EXISTS (SELECT 1 FROM ask_canary FOR UPDATE)$q$),
 ($q$SELECT pg_read_file('/etc/passwd')$q$),
 ($q$SELECT * FROM pg_catalog.pg_read_binary_file('postgresql.conf')$q$),
 ($q$SELECT pg_ls_dir('.')$q$),
 ($q$SELECT pg_stat_file('postgresql.conf')$q$),
 ($q$SELECT set_config('work_mem', '1GB', false)$q$),
 ($q$SELECT current_setting('duet.tenant')$q$),
 ($q$SELECT nextval('ask_seq')$q$),
 ($q$SELECT setval('ask_seq', 100)$q$),
 ($q$SELECT n FROM ask_canary, LATERAL (SELECT nextval('ask_seq')) s$q$),
 ($q$SELECT pg_sleep(10)$q$),
 ($q$SELECT (SELECT pg_sleep_for('10 seconds'))::text$q$),
 ($q$SELECT dblink('dbname=postgres', 'DELETE FROM ask_canary')$q$),
 ($q$SELECT lo_export(1, '/tmp/ask_pwned')$q$),
 ($q$SELECT lo_import('/etc/passwd')$q$),
 ($q$COPY ask_canary TO PROGRAM 'touch /tmp/ask_pwned'$q$),
 ($q$COPY (SELECT 1) TO '/tmp/ask_pwned'$q$),
 ($q$SELECT query_to_xml('DELETE FROM ask_canary RETURNING 1', true, true, '')$q$),
 ($q$SELECT ts_stat('SELECT to_tsvector(n::text) FROM ask_canary')$q$),
 ($q$SELECT pg_terminate_backend(pg_backend_pid())$q$),
 ($q$SELECT pg_advisory_lock(1)$q$),
 ($q$SELECT pg_notify('ask', 'x')$q$),
 ($q$SELECT pg_reload_conf()$q$),
 ($q$SELECT txid_current()$q$),
 ($q$SELECT U&"pg_read_\0066ile"('/etc/passwd')$q$),
 ($q$DELETE FROM U&"ask_c\0061nary"$q$),
 ($q$SELECT U&"set_\0063onfig"('work_mem', '1GB', false)$q$),
 ($q$SELECT ask_evil_volatile()$q$),
 ($q$SELECT ask_evil_definer()$q$),
 ($q$SELECT 1 ### 2$q$),
 ($q$SELECT * FROM ask_sleepy_view$q$),
 ($q$SELECT 7::ask_sleepy_int2$q$),
 ($q$EXPLAIN ANALYZE DELETE FROM ask_canary$q$),
 ($q$DO $$BEGIN DELETE FROM ask_canary; END$$$q$),
 ($q$SET ROLE postgres$q$),
 ($q$RESET ALL$q$),
 ($q$EXECUTE ask_p$q$),
 ($q$PREPARE ask_q AS DELETE FROM ask_canary$q$),
 ($q$LISTEN ask$q$),
 ($q$VACUUM ask_canary$q$),
 ($q$CALL ask_nothing()$q$),
 ($q$```sql
DELETE FROM ask_canary
```$q$),
 ($q$SQL: SELECT 1; DROP TABLE ask_canary$q$),
 ($q$$q$),
 ($q$  ;  $q$),
 ($q$SELECT api_key FROM duet.llm_provider_keys$q$),
 ($q$SELECT n FROM ask_canary WHERE EXISTS (SELECT FROM duet.llm_providers WHERE base_url LIKE 'http%')$q$),
 ($q$SELECT * FROM ask_no_such_table$q$),
 ($q$SELECT FROM WHERE$q$);

-- every attack is refused, with the reason a model gets back for its correction
SELECT id, duet_ask_guard(answer) AS refused_because FROM ask_attacks ORDER BY id;
SELECT count(*) AS attacks, count(duet_ask_guard(answer)) AS refused FROM ask_attacks;

-- harmless answers pass (the guard is not a blanket refusal), SQL text inside strings stays text
SELECT duet_ask_guard($q$SELECT n FROM ask_canary$q$) IS NULL AS plain_select;
SELECT duet_ask_guard($q$SELECT '; DELETE FROM ask_canary; ' AS s$q$) IS NULL AS string_is_data;
SELECT duet_ask_guard($q$WITH t AS (SELECT n FROM ask_canary) SELECT count(*), random() < 2 FROM t$q$) IS NULL AS cte_and_random;
SELECT duet_ask_guard($q$```sql
SELECT n + 1 FROM ask_canary ORDER BY 1;
```$q$) IS NULL AS fenced_answer;
SELECT duet_ask_guard($q$VALUES (1), (2) UNION ALL SELECT n FROM ask_canary$q$) IS NULL AS values_union;
SELECT duet_ask_guard($q$SELECT 'ask_seq'::regclass, now(), lower('X')$q$) IS NULL AS stable_functions;
SELECT duet_ask_guard($q$SELECT 5::ask_positive$q$) IS NULL AS harmless_domain;

-- duet.ask_allowed_functions admits a volatile function, never a denied one
SELECT duet_ask_guard($q$SELECT setseed(0.5)$q$);
SET duet.ask_allowed_functions = 'setseed, pg_sleep';
SELECT duet_ask_guard($q$SELECT setseed(0.5)$q$) IS NULL AS allowlisted;
SELECT duet_ask_guard($q$SELECT pg_sleep(1)$q$);
RESET duet.ask_allowed_functions;

-- a user's function is refused whatever its label (IMMUTABLE would be folded by the planner),
-- and so is a user's aggregate whose support functions are the user's; a superuser may allow
-- one by schema.name, and then its support functions are vetted in turn
CREATE FUNCTION ask_liar_immutable(int) RETURNS int LANGUAGE sql IMMUTABLE
    AS $$ SELECT $1 $$;
CREATE FUNCTION ask_liar_sfunc(int, int) RETURNS int LANGUAGE plpgsql STABLE
    AS $$ BEGIN PERFORM set_config('work_mem', '64kB', false); RETURN coalesce($1, 0) + $2; END $$;
CREATE AGGREGATE ask_liar_sum(int) (SFUNC = ask_liar_sfunc, STYPE = int);
CREATE AGGREGATE ask_plain_sum(int) (SFUNC = int4pl, STYPE = int);
SELECT duet_ask_guard($q$SELECT ask_liar_immutable(1)$q$);
SELECT duet_ask_guard($q$SELECT ask_liar_sum(n) FROM ask_canary$q$);
SET duet.ask_allowed_functions = 'public.ask_liar_sum, public.ask_liar_immutable, public.ask_plain_sum';
SELECT duet_ask_guard($q$SELECT ask_liar_immutable(1)$q$) IS NULL AS allowlisted_by_schema_name;
SELECT duet_ask_guard($q$SELECT ask_liar_sum(n) FROM ask_canary$q$);
SELECT duet_ask_guard($q$SELECT ask_plain_sum(n) FROM ask_canary$q$) IS NULL AS builtin_support_functions;
SET duet.ask_allowed_functions = 'ask_liar_immutable';
SELECT duet_ask_guard($q$SELECT ask_liar_immutable(1)$q$) IS NOT NULL AS a_plain_name_does_not_allow_a_users_function;
RESET duet.ask_allowed_functions;
DROP AGGREGATE ask_liar_sum(int), ask_plain_sum(int);
DROP FUNCTION ask_liar_sfunc(int, int), ask_liar_immutable(int);

-- a role without privileges on the table: refused with the executor's own message
CREATE ROLE ask_guard_reader;
SET ROLE ask_guard_reader;
SELECT duet_ask_guard($q$SELECT n FROM ask_canary$q$);
RESET ROLE;

-- canaries: nothing ran
SELECT n FROM ask_canary;
SELECT last_value FROM ask_seq;
SHOW work_mem;
SELECT to_regclass('ask_evil') IS NULL AND to_regclass('ask_evil2') IS NULL AS no_tables_created;
SELECT pg_stat_file('/tmp/ask_pwned', true) IS NULL AS no_file_written;

DROP ROLE ask_guard_reader;
DROP VIEW ask_sleepy_view;
DROP DOMAIN ask_sleepy_int2, ask_sleepy_int, ask_positive;
DROP OPERATOR ### (int, int);
DROP FUNCTION ask_evil_op(int, int), ask_evil_volatile(), ask_evil_definer();
DROP SEQUENCE ask_seq;
DROP TABLE ask_canary;
DEALLOCATE ask_p;
RESET work_mem;
