-- pg_duet update 0.1.0 -> 0.2.0.
-- Every SQL change after the frozen 0.1.0 release goes here AND into pg_duet/sql/NN_*.sql (the
-- full install script of the current version); test/t/090_upgrade.pl checks that both give the
-- same schema.

\echo Use "ALTER EXTENSION pg_duet UPDATE TO '0.2.0'" to load this file. \quit
