-- config reads: tenant override, else global default, else fallback; typed getters and their errors
CREATE ROLE config_get_a LOGIN;
CREATE ROLE config_get_b LOGIN;
SELECT duet_tenant_create('cget-a'), duet_tenant_create('cget-b');
SELECT duet_tenant_add_member('cget-a', 'config_get_a'), duet_tenant_add_member('cget-b', 'config_get_b');
SELECT duet_config_set_default('cget.limit', '10');
SELECT duet_config_set_default('cget.name', '"default name"');
SELECT duet_config_set_default('cget.ratio', '0.25');
SELECT duet_config_set_default('cget.flag', 'false');
SELECT duet_config_set_default('cget.obj', '{"a": [1, 2], "b": null}');
SELECT duet_config_set_default('cget.nothing', 'null');
SELECT duet_config_set_default('cget.big', '3000000000');
SELECT duet_config_set_default('cget.frac', '2.5');
SELECT duet_config_set_default('cget.whole', '7.000');
SET ROLE config_get_a;
SELECT duet_config_set('cget.limit', '20');
SELECT duet_config_set('cget.flag', 'true');
-- tenant override first, then the default
SELECT duet_config_get('cget.limit') AS "limit", duet_config_get('cget.name') AS name,
       duet_config_get('cget.obj') AS obj;
-- unknown keys: NULL, or the fallback
SELECT duet_config_get('cget.missing') IS NULL AS is_null, duet_config_get('cget.missing', '"fb"') AS fallback;
SELECT duet_config_get_int('cget.missing', 42), duet_config_get_text('cget.missing', 'x'),
       duet_config_get_bool('cget.missing', true), duet_config_get_numeric('cget.missing', 1.5),
       duet_config_get_float8('cget.missing', 2.5);
-- a key that is set wins over the fallback
SELECT duet_config_get_int('cget.limit', 42);
-- typed getters
SELECT duet_config_get_int('cget.limit'), duet_config_get_text('cget.name'), duet_config_get_bool('cget.flag'),
       duet_config_get_numeric('cget.ratio'), duet_config_get_float8('cget.ratio'), duet_config_get_int('cget.whole');
-- JSON null is SQL NULL for every getter (not the fallback: the key is set)
SELECT duet_config_get('cget.nothing'), duet_config_get_int('cget.nothing', 5) IS NULL AS int_null,
       duet_config_get_text('cget.nothing', 'x') IS NULL AS text_null;
-- type mismatches are clear errors
SELECT duet_config_get_int('cget.name');
SELECT duet_config_get_int('cget.frac');
SELECT duet_config_get_int('cget.big');
SELECT duet_config_get_text('cget.limit');
SELECT duet_config_get_bool('cget.limit');
SELECT duet_config_get_numeric('cget.obj');
SELECT duet_config_get_float8('cget.flag');
SELECT duet_config_get_text('cget.obj');
-- bad keys
SELECT duet_config_get('Bad Key');
SELECT duet_config_get(repeat('k', 129));
SELECT duet_config_get(NULL) IS NULL AS null_key;
-- another tenant sees its own values
RESET ROLE;
SET ROLE config_get_b;
SELECT duet_config_get('cget.limit') AS "limit", duet_config_get_bool('cget.flag') AS flag;
RESET ROLE;
-- with no tenant, only defaults apply
SELECT duet_set_tenant(NULL);
SELECT duet_config_get('cget.limit');
SELECT duet_set_tenant('cget-a');
SELECT duet_config_get('cget.limit');
SELECT duet_set_tenant(NULL);
-- clean up
DELETE FROM duet.config WHERE key LIKE 'cget.%';
DELETE FROM duet.config_history WHERE key LIKE 'cget.%';
DELETE FROM duet.tenants WHERE name LIKE 'cget-%';
DROP ROLE config_get_a, config_get_b;
