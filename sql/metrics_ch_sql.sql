-- metrics_ch_sql: duet_metric_sql(name, 'clickhouse'), duet_formula_sql(..., 'clickhouse') and
-- duet_clickhouse_sql_functions(): the ClickHouse expression (calc/sqlgen_ch.c; composed metrics
-- inlined) and the CREATE FUNCTION statements, or a refusal naming the construct. The expressions
-- are run on the real ClickHouse server by test/suites/55-clickhouse-server.sh.
SELECT name FROM duet_metric_define('mc_roas', 'revenue / spend');
SELECT name FROM duet_metric_define('mc_pacing',
    'case when budget is null or budget = 0 then null else clamp(spend / budget, 0, 2) end');
SELECT name FROM duet_metric_define('mc_double', 'mc_roas(revenue, spend) * 2');
SELECT name FROM duet_metric_define('mc_roas_pct', 'round(mc_roas(revenue, spend) * 100, 1)');
SELECT name FROM duet_metric_define('mc_label', 'if(x > 1, ''big'', ''it''''s \ small'')');
SELECT name FROM duet_metric_define('mc_upper', 'upper(s)', argument_types => '{"s": "String"}');
SELECT name FROM duet_metric_define('mc_flag', 'a and not b', argument_types => '{"a": "Bool", "b": "Bool"}');
-- a parameter name with a backquote stays one identifier
SELECT name FROM duet_metric_define('mc_evil', '"a`) -> 1; DROP TABLE t; --" * 2');

SELECT duet_metric_sql('mc_roas', 'clickhouse');
-- composed: mc_roas is inlined
SELECT duet_metric_sql('mc_double', 'clickhouse');
SELECT duet_metric_sql('mc_pacing', 'clickhouse');
SELECT duet_metric_sql('mc_label', 'clickhouse');
SELECT duet_metric_sql('mc_flag', 'clickhouse');
SELECT duet_metric_sql('mc_evil', 'clickhouse');
-- refused by name, with where in the expanded formula
SELECT duet_metric_sql('mc_roas_pct', 'clickhouse');
SELECT duet_metric_sql('mc_upper', 'clickhouse');
SELECT duet_formula_sql('x % 2', dialect => 'clickhouse');
SELECT duet_formula_sql('9007199254740993 + x', dialect => 'clickhouse');
SELECT duet_formula_sql('least(s, ''b'')', '{s}', '{String}', 'clickhouse');
-- formulas: constants fold; a subnormal constant is written as its bits (18.16 cannot parse it)
SELECT duet_formula_sql('1 + 2', dialect => 'clickhouse');
SELECT duet_formula_sql('x * 5e-324', dialect => 'clickhouse');
SELECT duet_formula_sql('null', dialect => 'clickhouse');
SELECT duet_formula_sql('a or b', '{a,b}', '{Bool,Bool}', 'clickhouse');
-- arithmetic nested 20 deep: ClickHouse's guards repeat their operands, so its text passes the
-- limit and the formula is refused (a metric so defined says so in not_compiled); PostgreSQL's
-- duet_num_* calls do not repeat them
SELECT duet_formula_sql('((((((((((((((((((((x * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1)', dialect => 'clickhouse');
SELECT length(duet_formula_sql('((((((((((((((((((((x * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1) * 2 + 1)')) < 2000 AS postgres_is_short;
-- ^ compiles to ClickHouse (the same libm as Duet's), not to PostgreSQL (it raises on overflow)
SELECT duet_formula_sql('x ^ 2', dialect => 'clickhouse');
SELECT duet_formula_sql('x ^ 2');

-- the SQL user-defined functions of the metrics the caller uses
SELECT name, arguments, ddl IS NOT NULL AS has_ddl, not_compiled
  FROM duet_clickhouse_sql_functions() WHERE name LIKE 'mc\_%' ORDER BY name;
SELECT ddl FROM duet_clickhouse_sql_functions() WHERE name IN ('mc_roas', 'mc_evil') ORDER BY name;
-- the expression is duet_metric_sql's
SELECT count(*) AS same FROM duet_clickhouse_sql_functions() f
 WHERE f.name LIKE 'mc\_%' AND CASE WHEN f.expression IS NULL THEN false
                                    ELSE f.expression = duet_metric_sql(f.name, 'clickhouse') END;

-- a tenant's override replaces the global metric in its functions, and only for that tenant
SELECT duet_tenant_create('mc-tenant');
SELECT duet_set_tenant('mc-tenant');
SELECT name, tenant FROM duet_metric_set('mc_roas', 'revenue / spend * 100', 'in percent');
SELECT expression FROM duet_clickhouse_sql_functions() WHERE name = 'mc_roas';
SELECT expression FROM duet_clickhouse_sql_functions() WHERE name = 'mc_double';
SELECT duet_set_tenant(NULL);
SELECT expression FROM duet_clickhouse_sql_functions() WHERE name = 'mc_roas';
DELETE FROM duet.metrics WHERE tenant = 'mc-tenant';
DELETE FROM duet.metrics_history WHERE tenant = 'mc-tenant';
DELETE FROM duet.tenants WHERE name = 'mc-tenant';

SELECT duet_metric_drop(m) FROM unnest(ARRAY['mc_roas_pct', 'mc_double', 'mc_roas', 'mc_pacing', 'mc_label',
                                             'mc_upper', 'mc_flag', 'mc_evil']) m;
