-- metrics: duet_clickhouse_config() declares one ClickHouse function per metric plus the definitions file
SELECT xml, definitions FROM duet_clickhouse_config();
SELECT name, return_type FROM duet_metric_define('roas', 'revenue / spend', 'return on ad spend <gross> & "net" -- all');
SELECT (duet_metric_define('is_brand', 'starts_with(lower("campaign name"), ''brand'')', NULL,
                          '{"campaign name": "String"}')).name;
SELECT (duet_metric_define('note', E'spend\t* 2\n + 1', 'formula with a tab and a newline')).name;
SELECT xml FROM duet_clickhouse_config();
SELECT definitions FROM duet_clickhouse_config('TabSeparated', false);
SELECT xml FROM duet_clickhouse_config('TabSeparated', false);
SELECT duet_clickhouse_config('Parquet');
SELECT duet_metric_drop('roas'), duet_metric_drop('is_brand'), duet_metric_drop('note');
