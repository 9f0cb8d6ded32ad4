-- pg_duet update 0.1.0 -> 0.2.0.
-- Every SQL change after the frozen 0.1.0 release goes here AND into pg_duet/sql/NN_*.sql (the
-- full install script of the current version); test/t/090_upgrade.pl checks that both give the
-- same schema.

\echo Use "ALTER EXTENSION pg_duet UPDATE TO '0.2.0'" to load this file. \quit

-- pg_dump: the identity sequences of dumped tables, so a restored database continues their
-- numbering (sql/20_config.sql, 40_rules.sql, 50_ask.sql).
SELECT pg_catalog.pg_extension_config_dump('duet.config_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.rules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alerts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.alert_transitions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.ask_examples_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('duet.ask_log_id_seq', '');

-- duet.llm_provider_keys holds API keys: 0.1.0 dumped it, 0.2.0 does not (sql/50_ask.sql no longer
-- marks it). Dropping a table from the extension removes its pg_extension_config_dump entry;
-- adding it back keeps it a member, with its privileges.
ALTER EXTENSION pg_duet DROP TABLE duet.llm_provider_keys;
ALTER EXTENSION pg_duet ADD TABLE duet.llm_provider_keys;
