-- Retention settings have a unit since 0.2.0: minutes (GUC_UNIT_MIN), written '30d'. A bare
-- number is minutes; anything under a day is refused, so a 0.1.0 line "= 30" (days) fails
-- loudly instead of pruning all but 30 minutes.
SELECT name, setting, unit, boot_val, min_val, max_val, context FROM pg_settings
 WHERE name IN ('duet.ask_log_retention_days', 'duet.rules_history_retention') ORDER BY name;
SHOW duet.ask_log_retention_days;
SHOW duet.rules_history_retention;
SET duet.ask_log_retention_days = '45d';
SHOW duet.ask_log_retention_days;
SET duet.ask_log_retention_days = '36h';
SHOW duet.ask_log_retention_days;
SET duet.ask_log_retention_days = 1440;
SHOW duet.ask_log_retention_days;
-- refused: the old bare days, under a day, zero (the ask log always has a retention)
SET duet.ask_log_retention_days = 30;
SET duet.ask_log_retention_days = '23h';
SET duet.ask_log_retention_days = 0;
SHOW duet.ask_log_retention_days;
-- a reloadable setting is checked by ALTER SYSTEM before anything is written
ALTER SYSTEM SET duet.rules_history_retention = 90;
ALTER SYSTEM SET duet.rules_history_retention = '2h';
-- pruning counts in minutes: with '2d', a row of 3 days goes, one of 1 day stays
BEGIN;
SET LOCAL duet.ask_log_retention_days = '2d';
INSERT INTO duet.ask_log (at, role, question, attempts, corrections, tokens_in, tokens_out, latency_ms, status)
VALUES (now() - interval '3 days', 'retention_test', 'three days old', 1, 0, 0, 0, 1, 'ok'),
       (now() - interval '1 day', 'retention_test', 'one day old', 1, 0, 0, 0, 1, 'ok');
SELECT duet_ask_prune();
SELECT question FROM duet.ask_log WHERE role = 'retention_test' ORDER BY question;
ROLLBACK;
RESET duet.ask_log_retention_days;
