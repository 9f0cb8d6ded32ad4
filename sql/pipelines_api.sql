-- pipelines_api: creating, changing, running and dropping pipelines; every bad input is a clear
-- error, found at creation; runs, expectations, quarantine, replay, backfill and the status.
SELECT duet_tenant_create('pipes-api');
CREATE ROLE pipes_api_owner;
CREATE ROLE pipes_api_stranger;
SELECT duet_tenant_add_member('pipes-api', 'pipes_api_owner');
CREATE TABLE pipes_api_bronze (_partition int NOT NULL, _offset bigint NOT NULL, payload jsonb,
                               PRIMARY KEY (_partition, _offset));
CREATE TABLE pipes_api_silver (id text PRIMARY KEY, amount numeric, doubled float8);
CREATE TABLE pipes_api_log (id text, amount numeric);
CREATE TABLE pipes_api_secret (x int);
GRANT SELECT ON pipes_api_bronze TO pipes_api_owner;
GRANT SELECT, INSERT, UPDATE ON pipes_api_silver TO pipes_api_owner;
GRANT SELECT, INSERT ON pipes_api_log TO pipes_api_owner;
INSERT INTO pipes_api_bronze VALUES
    (0, 0, '{"id": "a", "amount": 5}'), (1, 0, '{"id": "b", "amount": -1}'), (0, 1, '{"id": "a", "amount": 7}'),
    (1, 1, '{"id": "c", "amount": 2, "note": "x"}'), (0, 2, '{"id": "d", "amount": "3"}');

-- no tenant: pipelines belong to one
SET ROLE pipes_api_stranger;
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset');
RESET ROLE;

SET ROLE pipes_api_owner;
-- bad input, each refused at creation
SELECT duet_pipeline_create(NULL, 'pipes_api_bronze', 'pipes_api_silver', '{"id": "1"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_bronze', '{"_offset": "1"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '[]', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": 1}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"nosuch": "1"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => 'nosuch');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            drift_column => '_partition');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            mode => 'upsert');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            mode => 'upsert', key => '{amount}');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''", "amount": "1"}',
                            order_by => '_offset', mode => 'upsert', key => '{amount}');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            mode => 'merge');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id'') AS id, (1"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''", "doubled": "=amount *"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "(SELECT x FROM pipes_api_secret)::text"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''", "amount": "payload"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_secret', '{"x": "1"}', order_by => '_offset');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            expectations => '{}');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            expectations => '[{"name": "e", "predicate": "true", "action": "explode"}]');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            expectations => '[{"name": "e", "predicate": "true"}, {"name": "e", "predicate": "false"}]');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "payload->>''id''"}', order_by => '_offset',
                            expectations => '[{"name": "e", "predicate": "nosuch > 0"}]');
SELECT duet_pipeline_create('p', 'pipes_api_bronze', 'pipes_api_log', '{"id": "payload->>''id''", "amount": "sum(1)"}',
                            order_by => '_offset', mode => 'aggregate', key => '{id}');
SELECT count(*) AS stored FROM duet.pipelines;

-- a good one: upsert, a formula, a drop and a warn expectation, drift on payload
SELECT duet_pipeline_create('silver', 'pipes_api_bronze', 'pipes_api_silver',
    '{"id": "payload->>''id''", "amount": "(payload->>''amount'')::numeric", "doubled": "=_offset * 2"}',
    order_by => '_offset', partition_by => '_partition', key => '{id}', mode => 'upsert', batch_size => 2,
    expectations => '[{"name": "positive", "predicate": "amount > 0", "action": "drop"},
                      {"name": "small", "predicate": "=amount < 6", "action": "warn"}]',
    drift_column => 'payload') > 0 AS created;
SELECT duet_pipeline_create('silver', 'pipes_api_bronze', 'pipes_api_silver', '{"id": "1"}', order_by => '_offset');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'pipes_api_bronze'::regclass;
SELECT duet_pipeline_run('silver');
SELECT * FROM pipes_api_silver ORDER BY id;
SELECT part, pos, failed, source_row FROM duet.pipeline_quarantine;
SELECT kind, status, rows_in, rows_out, rows_dropped, failures, drift, position FROM duet.pipeline_runs ORDER BY id;
SELECT name, state, position, lag_rows, rows_in_1h, rows_out_1h, rows_dropped_1h, failures_1h, drift_24h, quarantined
  FROM duet.pipeline_status;

-- alter: bad changes, then a fix of the expectation and a replay of the quarantine
SELECT duet_pipeline_alter('silver', '[]');
SELECT duet_pipeline_alter('silver', '{"source": "x"}');
SELECT duet_pipeline_alter('silver', '{"mode": null}');
SELECT duet_pipeline_alter('silver', '{"transform": {"id": "1; DROP TABLE pipes_api_silver"}}');
SELECT duet_pipeline_alter('silver', '{"expectations": [{"name": "not_zero", "predicate": "amount <> 0", "action": "drop"}]}');
SELECT duet_pipeline_replay('silver');
SELECT id, amount FROM pipes_api_silver ORDER BY id;
SELECT count(*) FILTER (WHERE replayed_at IS NULL) AS pending, count(*) AS entries FROM duet.pipeline_quarantine;

-- a fail expectation: the run commits nothing and stops the pipeline; resume after the fix
SELECT duet_pipeline_alter('silver', '{"expectations": [{"name": "not_huge", "predicate": "amount < 100", "action": "fail"}]}');
RESET ROLE;
INSERT INTO pipes_api_bronze VALUES (0, 3, '{"id": "e", "amount": 1}'), (1, 2, '{"id": "f", "amount": 1000}');
SET ROLE pipes_api_owner;
SELECT duet_pipeline_run('silver');
SELECT name, state, last_error, position FROM duet.pipeline_status;
SELECT count(*) AS written FROM pipes_api_silver WHERE id IN ('e', 'f');
SELECT duet_pipeline_run('silver');
SELECT duet_pipeline_alter('silver', '{"expectations": []}');
SELECT duet_pipeline_resume('silver');
SELECT duet_pipeline_run('silver');
SELECT id, amount FROM pipes_api_silver WHERE id IN ('e', 'f') ORDER BY id;

-- backfill: a range again; the position stays
SELECT duet_pipeline_backfill('silver', NULL, '1');
SELECT duet_pipeline_backfill('silver', '0', '1', '0');
SELECT position FROM duet.pipelines;
SELECT duet_pipeline_pause('silver');
SELECT state FROM duet.pipelines;
RESET ROLE;

-- another role of the tenant may not change the owner's pipeline
SELECT duet_tenant_add_member('pipes-api', 'pipes_api_stranger');
SET ROLE pipes_api_stranger;
SELECT duet_pipeline_drop('silver');
SELECT duet_pipeline_run('silver');
RESET ROLE;

-- a pipeline whose source was dropped fails alone, saying why; the status still shows it
RESET ROLE;
CREATE TABLE pipes_api_gone (id bigint PRIMARY KEY);
GRANT SELECT ON pipes_api_gone TO pipes_api_owner;
SET ROLE pipes_api_owner;
SELECT duet_pipeline_create('gone', 'pipes_api_gone', 'pipes_api_log', '{"id": "id"}', order_by => 'id') > 0 AS created;
RESET ROLE;
DROP TABLE pipes_api_gone;
SET ROLE pipes_api_owner;
SELECT duet_pipeline_run('gone');
SELECT name, state, lag_rows, last_error FROM duet.pipeline_status ORDER BY name;
SELECT duet_pipeline_drop('gone');

SET ROLE pipes_api_owner;
SELECT duet_pipeline_drop('silver');
SELECT duet_pipeline_drop('silver');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'pipes_api_bronze'::regclass;
SELECT count(*) FROM duet.pipeline_quarantine;
RESET ROLE;

DROP TABLE pipes_api_bronze, pipes_api_silver, pipes_api_log, pipes_api_secret;
DELETE FROM duet.tenants WHERE name = 'pipes-api';
DROP ROLE pipes_api_owner, pipes_api_stranger;
