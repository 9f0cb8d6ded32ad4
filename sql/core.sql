-- core: the extension installs, its library matches its SQL, and objects land where DESIGN §1 says.
-- (pg_regress creates the extension in the test database: --load-extension=pg_duet)
SELECT duet_version() = (SELECT extversion FROM pg_extension WHERE extname = 'pg_duet') AS library_matches_sql;
SELECT nspname FROM pg_namespace WHERE nspname = 'duet';
-- every function the extension creates is named duet_* and documented
SELECT p.proname
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_duet') AND d.deptype = 'e'
   AND (p.proname NOT LIKE 'duet\_%' OR obj_description(p.oid, 'pg_proc') IS NULL)
 ORDER BY 1;
-- settings under duet.* are reserved: a misspelt one is an error, not a silent placeholder
SET duet.no_such_setting = 'x';
