-- ask_errors: bad input to duet_ask and its tables gets a clear error, before any provider is asked.
SELECT duet_ask('how many?', '{"bogus": 1}');
SELECT duet_ask('how many?', '{"max_corrections": 11}');
SELECT duet_ask('how many?', '[1, 2]');
SELECT duet_ask('   ');
SELECT duet_ask(repeat('x', 5000));
SELECT duet_ask(NULL) IS NULL AS null_question_gives_null;
-- no provider configured yet
SELECT duet_ask('how many?');
SELECT * FROM duet_ask_run('how many?', 0);
SET duet.ask_enabled = off;
SELECT duet_ask('how many?');
RESET duet.ask_enabled;

-- examples must pass the guard
SELECT duet_ask_feedback('wipe it', 'DELETE FROM pg_class');
SELECT duet_ask_feedback(NULL, 'SELECT 1');

-- provider rows are checked (terse: the failing row carries a timestamp)
\set VERBOSITY terse
INSERT INTO duet.llm_providers (name, kind, base_url, model) VALUES ('bad', 'gemini', 'https://x', 'm');
INSERT INTO duet.llm_providers (name, kind, base_url, model) VALUES ('bad', 'openai', 'file:///etc/passwd', 'm');
INSERT INTO duet.llm_providers (name, kind, base_url, model, api_key_env) VALUES ('bad', 'openai', 'http://x', 'm', 'A B');
INSERT INTO duet.llm_providers (name, kind, base_url, model, timeout_ms) VALUES ('bad', 'openai', 'http://x', 'm', 10);
\set VERBOSITY default

-- asking is granted, not public; providers, keys and the cache are not readable
CREATE ROLE ask_errors_user;
SET ROLE ask_errors_user;
SELECT duet_ask('how many?');
SELECT * FROM duet_ask_run('how many?');
SELECT * FROM duet.llm_providers;
SELECT * FROM duet.llm_provider_keys;
SELECT * FROM duet.ask_cache;
SELECT count(*) FROM duet.ask_log;
SELECT duet_ask_guard('SELECT 1') IS NULL AS guard_is_public;
RESET ROLE;
DROP ROLE ask_errors_user;
