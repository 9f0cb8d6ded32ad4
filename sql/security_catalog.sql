-- security_catalog: the catalog half of the extension-SQL lint (test/lint/sql_lint.py checks the
-- text). Each query lists the objects that break a rule of SECURITY.md; every list must be empty.
CREATE TEMP VIEW ext_objects AS
SELECT d.classid, d.objid
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_duet');

-- every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp
SELECT p.oid::regprocedure
  FROM pg_proc p JOIN ext_objects e ON e.classid = 'pg_proc'::regclass AND e.objid = p.oid
 WHERE p.prosecdef AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);

-- every SQL or PL/pgSQL function of schema duet (the owner's internal functions) does too
SELECT p.oid::regprocedure
  FROM pg_proc p JOIN ext_objects e ON e.classid = 'pg_proc'::regclass AND e.objid = p.oid
 WHERE p.pronamespace = 'duet'::regnamespace
   AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);

-- no internal function of schema duet is executable by PUBLIC
SELECT p.oid::regprocedure
  FROM pg_proc p JOIN ext_objects e ON e.classid = 'pg_proc'::regclass AND e.objid = p.oid
 WHERE p.pronamespace = 'duet'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE');

-- every table has row-level security (enabled and forced) or grants PUBLIC nothing
SELECT c.oid::regclass, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT array_agg(a.privilege_type ORDER BY a.privilege_type)
          FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE a.grantee = 0) AS public_privileges
  FROM pg_class c JOIN ext_objects e ON e.classid = 'pg_class'::regclass AND e.objid = c.oid
 WHERE c.relkind IN ('r', 'p')
   AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
   AND EXISTS (SELECT 1 FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE a.grantee = 0);

-- PUBLIC writes a table of the extension directly only under forced row-level security with a
-- policy for that command
SELECT c.oid::regclass, a.privilege_type
  FROM pg_class c JOIN ext_objects e ON e.classid = 'pg_class'::regclass AND e.objid = c.oid,
       aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.relkind IN ('r', 'p', 'v') AND a.grantee = 0 AND a.privilege_type <> 'SELECT'
   AND NOT (c.relrowsecurity AND c.relforcerowsecurity
            AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                         AND p.polcmd = lower(left(a.privilege_type, 1))::"char"));

-- views PUBLIC may read run as the reader (security_invoker), so row-level security applies
SELECT c.oid::regclass
  FROM pg_class c JOIN ext_objects e ON e.classid = 'pg_class'::regclass AND e.objid = c.oid
 WHERE c.relkind = 'v' AND has_table_privilege('public', c.oid, 'SELECT')
   AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false);

-- a view that runs as its owner and is granted to anyone is a security barrier: a cheap leaky
-- function in the reader's WHERE must not see the rows the view's own filter hides
SELECT c.oid::regclass
  FROM pg_class c JOIN ext_objects e ON e.classid = 'pg_class'::regclass AND e.objid = c.oid
 WHERE c.relkind = 'v'
   AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
   AND NOT coalesce('security_barrier=true' = ANY (c.reloptions), false)
   AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner);

-- secret-holding columns are readable by no one but their owner
SELECT c.oid::regclass, a.attname
  FROM pg_class c JOIN ext_objects e ON e.classid = 'pg_class'::regclass AND e.objid = c.oid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE a.attname ~ '(api_key|secret|password|passwd)' AND a.attname !~ '_env$'
   AND (has_column_privilege('public', c.oid, a.attnum, 'SELECT')
        OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname LIKE 'duet\_%'
                    AND has_column_privilege(r.oid, c.oid, a.attnum, 'SELECT')));

-- no object of the extension lives in schema public other than the duet_* functions
SELECT pg_describe_object(e.classid, e.objid, 0)
  FROM ext_objects e
  LEFT JOIN pg_proc p ON e.classid = 'pg_proc'::regclass AND p.oid = e.objid
 WHERE e.classid = 'pg_class'::regclass
   AND (SELECT relnamespace FROM pg_class WHERE oid = e.objid) = 'public'::regnamespace;
