-- docs_comments: every public object of pg_duet is documented in the catalog, since
-- docs/sql-reference.md is generated from these comments (docs/gen_reference.py). Each query lists
-- what lacks a COMMENT; every list must be empty.
CREATE TEMP VIEW ext_objects AS
SELECT d.classid, d.objid
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_duet');

-- every column of every table and view of schema duet
SELECT c.oid::regclass AS relation, a.attname AS column
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'duet'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND col_description(c.oid, a.attnum) IS NULL
 ORDER BY 1::text, a.attnum;

-- every table and view of the extension
SELECT c.oid::regclass AS relation
  FROM pg_class c JOIN ext_objects e ON e.classid = 'pg_class'::regclass AND e.objid = c.oid
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND obj_description(c.oid, 'pg_class') IS NULL
 ORDER BY 1::text;

-- every function of the extension
SELECT p.oid::regprocedure AS function
  FROM pg_proc p JOIN ext_objects e ON e.classid = 'pg_proc'::regclass AND e.objid = p.oid
 WHERE obj_description(p.oid, 'pg_proc') IS NULL
 ORDER BY 1::text;

-- the schema
SELECT n.nspname FROM pg_namespace n WHERE n.nspname = 'duet' AND obj_description(n.oid, 'pg_namespace') IS NULL;

-- and nothing of schema duet outside the extension (a table created by a later script and
-- forgotten in ALTER EXTENSION would escape both lists above)
SELECT c.oid::regclass AS relation
  FROM pg_class c
 WHERE c.relnamespace = 'duet'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND NOT EXISTS (SELECT 1 FROM ext_objects e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid)
 ORDER BY 1::text;
