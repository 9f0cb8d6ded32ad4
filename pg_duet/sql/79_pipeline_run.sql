-- pg_duet install script, part 79 (run): the statement of a pipeline run and its bookkeeping.
-- (C: pg_duet/pipeline_run.c, pipeline_worker.c; the tables are in part 78, docs/pipelines.md)

------------------------------------------------------------------------------------------------
-- Internal functions (run as the extension owner)
------------------------------------------------------------------------------------------------

-- The column type of col in tbl as SQL text, or an error naming what is missing.
CREATE FUNCTION duet.duet_pipeline_column_type(tbl regclass, col text, what text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = tbl) THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_table',
            MESSAGE = 'a table of this pipeline was dropped',
            HINT = 'Drop the pipeline with duet_pipeline_drop() and create it again on the new table.';
    END IF;
    SELECT format_type(atttypid, atttypmod) INTO typ FROM pg_attribute
     WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped;
    IF typ IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_column',
            MESSAGE = format('pipeline %s column "%s" does not exist in %s', what, col, tbl);
    END IF;
    RETURN typ;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_column_type(regclass, text, text) IS
    'internal: the SQL type of a pipeline''s source or target column, or an error';
REVOKE ALL ON FUNCTION duet.duet_pipeline_column_type(regclass, text, text) FROM PUBLIC;

-- A transform entry or predicate as SQL: "=formula" becomes a duet_calc() call over vars.
CREATE FUNCTION duet.duet_pipeline_expr(expr text, vars text, typ text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN left(expr, 1) = '=' AND vars IS NOT NULL
                THEN format('((@extschema@.duet_calc(%L::pg_catalog.text, %s) OPERATOR(pg_catalog.#>>) ''{}''::pg_catalog.text[])::%s)',
                            substr(expr, 2), vars, typ)
                ELSE format('(%s)', expr) END
$$;
COMMENT ON FUNCTION duet.duet_pipeline_expr(text, text, text) IS
    'internal: a transform expression or expectation predicate as SQL (a "=" Duet formula becomes a duet_calc call)';
REVOKE ALL ON FUNCTION duet.duet_pipeline_expr(text, text, text) FROM PUBLIC;

-- The statement of one run, executed as the pipeline's owner with
--   $1 jsonb position, $2 integer row limit (NULL: none), $3 text lower bound, $4 text upper bound,
--   $5 text partition (backfill), $6 bigint pipeline id (replay), $7 jsonb drift schema.
-- kind: incremental (at most $2 rows past $1, in order), tail (every row past $1: used when a count
-- found no more than $2), count (how many rows are past $1, up to $2 + 1), backfill (order value
-- between $3 and $4, of partition $5 when given) or replay (quarantined rows not yet replayed). It returns one row: rows_in,
-- rows_out, rows_dropped, failures (name -> rows), position (partition -> greatest order value),
-- quarantine (jsonb array of [part, pos, failed, row]), fail (the first row failing a fail
-- expectation, or NULL), replayed (quarantine ids read), published (target rows as jsonb when
-- the pipeline has a topic), drift.
-- Transform expressions and predicates were each checked to parse as one expression
-- (duet_pipeline_check_expr) and are enclosed in parentheses.
CREATE FUNCTION duet.duet_pipeline_sql(p duet.pipelines, kind text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ord_type  text := duet.duet_pipeline_column_type(p.source, p.order_by, 'order_by');
    part_sql  text := CASE WHEN p.partition_by IS NULL THEN '''''::pg_catalog.text'
                           ELSE format('(s.%I)::pg_catalog.text', p.partition_by) END;
    cols      text[] := ARRAY(SELECT jsonb_object_keys(p.transform) ORDER BY 1);
    collist   text := (SELECT string_agg(format('%I', x), ', ' ORDER BY x) FROM unnest(cols) x);
    keycols   text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(p.key) k);
    sets      text := (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', x), ', ')
                         FROM unnest(cols) x WHERE x <> ALL (p.key));
    drops     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'drop' ORDER BY name);
    fails     text[] := ARRAY(SELECT name FROM duet.pipeline_expectations
                               WHERE pipeline_id = p.id AND action = 'fail' ORDER BY name);
    formulas  boolean := p.mode <> 'aggregate' AND EXISTS (SELECT FROM jsonb_each_text(p.transform) t WHERE left(t.value, 1) = '=');
    -- aggregate: the source's primary key, the identity whose group duet.pipeline_groups tracks
    srckey    text := coalesce((SELECT format('(pg_catalog.jsonb_build_array(%s))::pg_catalog.text',
                                              string_agg(format('s.%I', a.attname), ', ' ORDER BY k.n))
                                  FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(att, n)
                                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att
                                 WHERE i.indrelid = p.source AND i.indisprimary AND p.mode = 'aggregate'
                                HAVING count(*) > 0), 'NULL::pg_catalog.text');
    gex       text[];
    gnull     text;
    gcols     text;
    members   text := 'NULL::pg_catalog.jsonb';
    drifting  boolean := p.drift_column IS NOT NULL AND kind <> 'replay';
    exprs     text := '';
    checks    text := '';
    vars      text;
    e         record;
    c         text;
    src       text;
    rows_sql  text;
    past      text;
    write     text;
    keep      text;
    quarantine text := 'NULL::pg_catalog.jsonb';
    failure   text := 'NULL::pg_catalog.text';
    published text := 'NULL::pg_catalog.jsonb';
    drift     text := '''{}''::pg_catalog.jsonb';
    dschema   text := 'NULL::pg_catalog.jsonb';
BEGIN
    -- src: the rows of this run, with their partition, order value and what the quarantine and
    -- formulas need (the row itself only for formulas and replays; else its ctid, read again for
    -- the few quarantined rows within the same snapshot).
    IF kind = 'replay' THEN
        src := format('SELECT s AS __duet_src, s.*, q.part AS __duet_part, q.pos::%s AS __duet_ord, q.id AS __duet_qid, '
                      'NULL::pg_catalog.tid AS __duet_ctid '
                      'FROM duet.pipeline_quarantine q CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::%s, q.source_row) s '
                      'WHERE q.pipeline_id OPERATOR(pg_catalog.=) $6 AND q.replayed_at IS NULL '
                      'ORDER BY q.id LIMIT $2', ord_type, p.source);
    ELSE
        src := format('SELECT %s s.*, %s AS __duet_part, s.%I AS __duet_ord, NULL::pg_catalog.int8 AS __duet_qid, '
                      's.ctid AS __duet_ctid FROM %s s WHERE ',
                      CASE WHEN formulas THEN 's AS __duet_src,' ELSE '' END, part_sql, p.order_by, p.source);
        IF kind IN ('incremental', 'tail', 'count') THEN
            past := format('(($1 OPERATOR(pg_catalog.->>) %1$s) IS NULL OR s.%2$I OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.->>) %1$s)::%3$s)',
                           part_sql, p.order_by, ord_type);
            src := src || past;
            IF kind = 'count' THEN
                -- How many rows are past the position, counting no further than one batch and one.
                RETURN format('SELECT pg_catalog.count(*) FROM (SELECT FROM %s s WHERE %s LIMIT $2 OPERATOR(pg_catalog.+) 1) c',
                              p.source, past);
            ELSIF kind = 'incremental' THEN
                -- A batch: ordered by the raw columns, each partition's rows are a prefix of its rows.
                -- ('tail': every row past the position fits in the batch, so no order is needed.)
                src := src || format(' ORDER BY s.%1$I%2$s LIMIT $2', p.order_by,
                                     CASE WHEN p.partition_by IS NULL THEN '' ELSE format(', s.%I', p.partition_by) END);
            END IF;
        ELSE
            src := src || format('s.%1$I OPERATOR(pg_catalog.>=) $3::%2$s AND s.%1$I OPERATOR(pg_catalog.<=) $4::%2$s '
                                 'AND ($5 IS NULL OR %3$s OPERATOR(pg_catalog.=) $5)', p.order_by, ord_type, part_sql);
        END IF;
    END IF;

    IF p.mode = 'aggregate' THEN
        -- No expectations (checked at creation). The groups the new rows touch, with the groups
        -- their source keys contributed to before (duet.pipeline_groups: a row that moved to
        -- another group leaves its old group to recompute), are recomputed from the whole source;
        -- a NULL key is a group of its own. Key and SQL columns are the GROUP BY's select list (a),
        -- "=" columns Duet formulas over a's columns. A group left with no row is deleted.
        gex := ARRAY(SELECT format('(%s)::%s', duet.duet_pipeline_expr(p.transform ->> k, NULL, NULL),
                                   duet.duet_pipeline_column_type(p.target, k, 'target'))
                       FROM unnest(p.key) WITH ORDINALITY u(k, i) ORDER BY i);
        -- g's columns are named __duet_k1.. so that a key expression (source columns, unqualified)
        -- in a subquery over g never resolves to a column of g
        gcols := (SELECT string_agg(format('__duet_k%s', i), ', ') FROM generate_subscripts(p.key, 1) i);
        gnull := (SELECT string_agg(format('g.__duet_k%s IS NULL', i), ' OR ') FROM generate_subscripts(p.key, 1) i);
        rows_sql := 'v AS MATERIALIZED (SELECT src.*, NULL::pg_catalog.text[] AS __duet_failed FROM src), '
            || format('nv AS MATERIALIZED (SELECT DISTINCT %s, %s AS __duet_sk FROM v s), ',
                      (SELECT string_agg(format('%s AS %I', gex[i], p.key[i]), ', ') FROM generate_subscripts(p.key, 1) i),
                      srckey)
            -- og: the groups the rows' earlier versions contributed to, new ones excepted
            || format('og(%s) AS MATERIALIZED (SELECT %s FROM duet.pipeline_groups m '
                      'WHERE m.pipeline_id OPERATOR(pg_catalog.=) $6 AND m.src_key OPERATOR(pg_catalog.=) ANY '
                      '(SELECT nv.__duet_sk FROM nv WHERE nv.__duet_sk IS NOT NULL) EXCEPT SELECT %s FROM nv), '
                      'g(%1$s) AS (SELECT %3$s FROM nv UNION ALL SELECT %1$s FROM og), ',
                      gcols,
                      (SELECT string_agg(format('(m.grp OPERATOR(pg_catalog.->>) %s)::%s', i - 1,
                                                duet.duet_pipeline_column_type(p.target, p.key[i], 'target')), ', ')
                         FROM generate_subscripts(p.key, 1) i),
                      keycols)
            -- the source rows of those groups: of the new rows' groups by equality (a join the
            -- planner sizes on the rows read, as a GROUP BY of them), of the earlier groups only
            -- when there are any, and those with a NULL key column only when a group has one
            -- (one-time filters), matched NULL to NULL
            || format('a AS MATERIALIZED (SELECT %s FROM (SELECT s.* FROM %s s WHERE (%s) OPERATOR(pg_catalog.=) ANY (SELECT DISTINCT %3$s FROM v) '
                      'UNION ALL SELECT s.* FROM %2$s s WHERE EXISTS (SELECT FROM og) AND (%3$s) OPERATOR(pg_catalog.=) ANY (SELECT %4$s FROM og) '
                      'UNION ALL SELECT s.* FROM %2$s s WHERE EXISTS (SELECT FROM g WHERE %5$s) AND (%6$s) '
                      'AND EXISTS (SELECT FROM g WHERE %7$s)) s GROUP BY %8$s), ',
                      (SELECT string_agg(format('%s AS %I', CASE WHEN x = ANY (p.key) THEN gex[array_position(p.key, x)]
                                                                 ELSE duet.duet_pipeline_expr(p.transform ->> x, NULL, NULL) END, x), ', ' ORDER BY x)
                         FROM unnest(cols) x WHERE left(p.transform ->> x, 1) <> '=' OR x = ANY (p.key)),
                      p.source, array_to_string(gex, ', '), gcols,
                      gnull,
                      (SELECT string_agg(format('%s IS NULL', ge), ' OR ') FROM unnest(gex) ge),
                      (SELECT string_agg(format('(g.__duet_k%1$s OPERATOR(pg_catalog.=) %2$s OR (g.__duet_k%1$s IS NULL AND %2$s IS NULL))', i, gex[i]), ' AND ')
                         FROM generate_subscripts(p.key, 1) i),
                      array_to_string(gex, ', '))
            || format('gone AS (SELECT %s FROM g EXCEPT SELECT %s FROM a), ', gcols, keycols);
        write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM a ON CONFLICT (%s) DO %s RETURNING %s), '
                        'dg AS (DELETE FROM %s t WHERE EXISTS (SELECT FROM gone) AND EXISTS (SELECT FROM gone g WHERE %s)), ',
                        p.target, collist,
                        (SELECT string_agg(CASE WHEN left(p.transform ->> x, 1) = '=' AND x <> ALL (p.key)
                                                THEN duet.duet_pipeline_expr(p.transform ->> x, 'a',
                                                         duet.duet_pipeline_column_type(p.target, x, 'target'))
                                                ELSE format('a.%I', x) END, ', ' ORDER BY x) FROM unnest(cols) x),
                        keycols,
                        CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                        CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END,
                        p.target,
                        (SELECT string_agg(format('(g.__duet_k%1$s OPERATOR(pg_catalog.=) t.%2$I OR (g.__duet_k%1$s IS NULL AND t.%2$I IS NULL))', i, p.key[i]), ' AND ')
                           FROM generate_subscripts(p.key, 1) i));
        IF srckey <> 'NULL::pg_catalog.text' THEN
            members := format('(SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(nv.__duet_sk, pg_catalog.jsonb_build_array(%s))) FROM nv)',
                              (SELECT string_agg(format('nv.%I', k), ', ') FROM unnest(p.key) k));
        END IF;
    ELSE
        FOREACH c IN ARRAY cols LOOP
            exprs := exprs || format(', %s AS %I',
                                     duet.duet_pipeline_expr(p.transform ->> c, 's.__duet_src',
                                                             duet.duet_pipeline_column_type(p.target, c, 'target')), c);
        END LOOP;
        vars := (SELECT format('pg_catalog.jsonb_build_object(%s)', string_agg(format('%L::pg_catalog.text, x.%I', x, x), ', '))
                   FROM unnest(cols) x);
        FOR e IN SELECT name, predicate FROM duet.pipeline_expectations WHERE pipeline_id = p.id ORDER BY name LOOP
            checks := checks || format(', CASE WHEN %s IS NOT TRUE THEN %L::pg_catalog.text END',
                                       duet.duet_pipeline_expr(e.predicate, vars, 'pg_catalog.bool'), e.name);
        END LOOP;
        -- v: the transformed rows with the names of the expectations each failed; the transform is
        -- a subquery (not a CTE of its own) so that the rows are materialized once.
        rows_sql := format('v AS MATERIALIZED (SELECT x.*, %s AS __duet_failed FROM '
                           '(SELECT s.__duet_part, s.__duet_ord, s.__duet_qid, s.__duet_ctid%s%s%s FROM src s) x), ',
                           CASE WHEN checks = '' THEN 'NULL::pg_catalog.text[]'
                                ELSE format('pg_catalog.array_remove(ARRAY[NULL::pg_catalog.text%s], NULL)', checks) END,
                           CASE WHEN kind = 'replay' THEN ', s.__duet_src' ELSE '' END,
                           CASE WHEN drifting THEN format(', s.%I AS __duet_drift', p.drift_column) ELSE '' END,
                           exprs);
        IF p.mode = 'upsert' THEN
            keep := CASE WHEN cardinality(drops) = 0 THEN 'true'
                         ELSE format('NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[]', drops) END;
            IF kind IN ('replay', 'backfill') THEN
                -- A replayed or backfilled row may be older than what the pipeline has written of its
                -- key: it is skipped when the source holds a later row (by order value, then
                -- partition) of the same key that a run already read and wrote (not in quarantine).
                -- lw maps each key of v to its latest such row, in one scan of the source whatever
                -- the estimates: the IN tests stay hashed subplans (IS TRUE keeps them from becoming
                -- joins, which a one-row estimate of v would make nested loops over the source).
                rows_sql := rows_sql || format('lw AS MATERIALIZED (SELECT pg_catalog.jsonb_object_agg(m.k, '
                    'pg_catalog.jsonb_build_array(m.o, m.p) ORDER BY m.o, m.p) AS map FROM ('
                    'SELECT (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text AS k, s.%2$I AS o, %3$s AS p FROM %4$s s '
                    'WHERE s.%2$I OPERATOR(pg_catalog.<=) ($1 OPERATOR(pg_catalog.->>) %3$s)::%5$s '
                    'AND ((%1$s) IN (SELECT %6$s FROM v)) IS TRUE '
                    'AND ((%3$s, (s.%2$I)::pg_catalog.text) IN (SELECT q.part, q.pos FROM duet.pipeline_quarantine q '
                    'WHERE q.pipeline_id OPERATOR(pg_catalog.=) $6 AND q.replayed_at IS NULL)) IS NOT TRUE) m), ',
                    (SELECT string_agg(duet.duet_pipeline_expr(p.transform ->> k, 's',
                                                               duet.duet_pipeline_column_type(p.target, k, 'target')), ', ')
                       FROM unnest(p.key) k),
                    p.order_by, part_sql, p.source, ord_type,
                    (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k));
                keep := keep || format(' AND ((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) '
                    '(pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) OPERATOR(pg_catalog.->>) 0)::%2$s '
                    'OPERATOR(pg_catalog.>) v.__duet_ord '
                    'OR (((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) '
                    'OPERATOR(pg_catalog.->>) 0)::%2$s OPERATOR(pg_catalog.=) v.__duet_ord) '
                    'AND ((((SELECT lw.map FROM lw) OPERATOR(pg_catalog.->) (pg_catalog.jsonb_build_array(%1$s))::pg_catalog.text) '
                    'OPERATOR(pg_catalog.->>) 1) OPERATOR(pg_catalog.>) v.__duet_part))) IS NOT TRUE',
                    (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k), ord_type);
            END IF;
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM (SELECT DISTINCT ON (%s) * FROM v %s'
                            'ORDER BY %s, v.__duet_ord DESC, v.__duet_part DESC) d '
                            'ON CONFLICT (%s) DO %s RETURNING %s), ',
                            p.target, collist, collist, keycols,
                            CASE WHEN keep = 'true' THEN '' ELSE 'WHERE ' || keep || ' ' END,
                            (SELECT string_agg(format('v.%I', k), ', ') FROM unnest(p.key) k),
                            keycols, CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        ELSE
            write := format('w AS (INSERT INTO %s AS t (%s) SELECT %s FROM v %s'
                            'ORDER BY v.__duet_ord, v.__duet_part RETURNING %s), ',
                            p.target, collist, collist,
                            CASE WHEN cardinality(drops) = 0 THEN ''
                                 ELSE format('WHERE NOT v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ', drops) END,
                            CASE WHEN p.topic IS NULL THEN '1' ELSE 't.*' END);
        END IF;
        IF cardinality(drops) > 0 THEN
            quarantine := format('(SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(v.__duet_part, (v.__duet_ord)::pg_catalog.text, '
                                 'v.__duet_failed, %s)) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])',
                                 CASE WHEN kind = 'replay' THEN 'pg_catalog.to_jsonb(v.__duet_src)'
                                      ELSE format('(SELECT pg_catalog.to_jsonb(b) FROM %s b WHERE b.ctid OPERATOR(pg_catalog.=) v.__duet_ctid)', p.source) END,
                                 drops);
        END IF;
        IF cardinality(fails) > 0 THEN
            failure := format('(SELECT pg_catalog.format(''row at position %%s of partition "%%s" failed %%s'', v.__duet_ord, v.__duet_part, '
                              'pg_catalog.array_to_string(v.__duet_failed, '', '')) '
                              'FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[] ORDER BY v.__duet_ord LIMIT 1)', fails);
        END IF;
    END IF;

    IF p.topic IS NOT NULL THEN
        published := '(SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(w)) FROM w)';
    END IF;
    IF drifting AND p.mode <> 'aggregate' THEN
        -- The reference schema: the stored one ($7), else the key types of the first row read.
        rows_sql := rows_sql || 'ds AS (SELECT COALESCE($7, (SELECT pg_catalog.jsonb_object_agg(e.key, pg_catalog.jsonb_typeof(e.value)) '
                    'FROM (SELECT v.__duet_drift AS d FROM v WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' '
                    'ORDER BY v.__duet_ord LIMIT 1) f, pg_catalog.jsonb_each(f.d) e)) AS schema), '
                    'de AS (SELECT e.key, e.value FROM v, pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(v.__duet_drift) '
                    'OPERATOR(pg_catalog.=) ''object'' THEN v.__duet_drift ELSE ''{}''::pg_catalog.jsonb END) e), ';
        dschema := '(SELECT ds.schema FROM ds)';
        drift := 'pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('
            '''new_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE NOT ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.?) de.key) GROUP BY 1) a), '
            '''type_changes'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT de.key AS k, pg_catalog.count(*) AS n FROM de '
                'WHERE ((SELECT ds.schema FROM ds) OPERATOR(pg_catalog.->>) de.key) OPERATOR(pg_catalog.<>) pg_catalog.jsonb_typeof(de.value) GROUP BY 1) b), '
            '''missing_keys'', (SELECT pg_catalog.jsonb_object_agg(k, n) FROM (SELECT r.key AS k, pg_catalog.count(*) AS n '
                'FROM v, pg_catalog.jsonb_each_text((SELECT ds.schema FROM ds)) r '
                'WHERE pg_catalog.jsonb_typeof(v.__duet_drift) OPERATOR(pg_catalog.=) ''object'' AND NOT (v.__duet_drift OPERATOR(pg_catalog.?) r.key) GROUP BY 1) c)))';
    END IF;

    RETURN format('WITH src AS (%1$s), %2$s%3$s '
                  'SELECT (SELECT pg_catalog.count(*) FROM v), (SELECT pg_catalog.count(*) FROM w), %4$s, '
                  '%5$s, '
                  '(SELECT pg_catalog.jsonb_object_agg(__duet_part, m) FROM (SELECT __duet_part, (pg_catalog.max(__duet_ord))::pg_catalog.text AS m FROM v GROUP BY 1) m), '
                  '%6$s, %7$s, %8$s, %9$s, %10$s, %11$s, %12$s',
                  src, rows_sql, left(write, -2),
                  CASE WHEN cardinality(drops) = 0 THEN '0::pg_catalog.int8'
                       ELSE format('(SELECT pg_catalog.count(*) FROM v WHERE v.__duet_failed OPERATOR(pg_catalog.&&) %L::pg_catalog.text[])', drops) END,
                  CASE WHEN checks = '' THEN 'NULL::pg_catalog.jsonb'
                       ELSE '(SELECT pg_catalog.jsonb_object_agg(f, n) FROM (SELECT f, pg_catalog.count(*) AS n FROM v, pg_catalog.unnest(v.__duet_failed) f GROUP BY f) c)' END,
                  quarantine, failure,
                  CASE WHEN kind = 'replay' THEN '(SELECT pg_catalog.array_agg(__duet_qid) FROM v)' ELSE 'NULL::pg_catalog.int8[]' END,
                  published, drift, dschema, members);
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_sql(duet.pipelines, text) IS
    'internal: the statement of one pipeline run (incremental, backfill or replay), run as the pipeline''s owner';
REVOKE ALL ON FUNCTION duet.duet_pipeline_sql(duet.pipelines, text) FROM PUBLIC;


-- A successful run: position, quarantine, replayed entries, outbox rows and history, in the
-- run's transaction.
CREATE FUNCTION duet.duet_pipeline_commit(p_id bigint, p_kind text, p_started timestamptz, p_in bigint,
        p_out bigint, p_dropped bigint, p_failures jsonb, p_position jsonb, p_quarantine jsonb,
        p_replayed bigint[], p_published jsonb, p_drift jsonb, p_schema jsonb, p_members jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines;
BEGIN
    UPDATE duet.pipelines
       SET position = CASE WHEN p_kind = 'incremental' THEN position || coalesce(p_position, '{}') ELSE position END,
           drift_schema = coalesce(drift_schema, p_schema),
           last_run_at = clock_timestamp(), last_success_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO p;
    IF p_quarantine IS NOT NULL THEN
        INSERT INTO duet.pipeline_quarantine (pipeline_id, tenant, part, pos, failed, source_row)
        SELECT p.id, p.tenant, q ->> 0, q ->> 1, ARRAY(SELECT jsonb_array_elements_text(q -> 2)), q -> 3
          FROM jsonb_array_elements(p_quarantine) q;
    END IF;
    IF p_members IS NOT NULL THEN
        INSERT INTO duet.pipeline_groups AS g (pipeline_id, tenant, src_key, grp)
        SELECT p.id, p.tenant, m ->> 0, m -> 1 FROM jsonb_array_elements(p_members) m
        ON CONFLICT (pipeline_id, src_key) DO UPDATE SET grp = EXCLUDED.grp WHERE g.grp IS DISTINCT FROM EXCLUDED.grp;
    END IF;
    IF p_replayed IS NOT NULL THEN
        UPDATE duet.pipeline_quarantine SET replayed_at = now() WHERE pipeline_id = p.id AND id = ANY (p_replayed);
    END IF;
    IF p_published IS NOT NULL AND p.topic IS NOT NULL THEN
        INSERT INTO duet.kafka_outbox (topic, key, value, headers)
        SELECT p.topic, NULL, r::text, jsonb_build_object('tenant', p.tenant, 'pipeline', p.name)
          FROM jsonb_array_elements(p_published) r;
    END IF;
    IF p_in > 0 OR p_kind <> 'incremental' THEN
        INSERT INTO duet.pipeline_runs (pipeline_id, tenant, kind, status, started_at, rows_in, rows_out,
                                        rows_dropped, failures, drift, position)
        VALUES (p.id, p.tenant, p_kind, 'ok', p_started, p_in, p_out, p_dropped, coalesce(p_failures, '{}'),
                coalesce(p_drift, '{}'), p.position);
    END IF;
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_commit(bigint, text, timestamptz, bigint, bigint, bigint, jsonb, jsonb,
                                              jsonb, bigint[], jsonb, jsonb, jsonb, jsonb) IS
    'internal: records a successful pipeline run in its transaction';
REVOKE ALL ON FUNCTION duet.duet_pipeline_commit(bigint, text, timestamptz, bigint, bigint, bigint, jsonb, jsonb,
                                                 jsonb, bigint[], jsonb, jsonb, jsonb, jsonb) FROM PUBLIC;

-- A failed run (rolled back): the pipeline stops in state error with the reason.
CREATE FUNCTION duet.duet_pipeline_failed(p_id bigint, p_kind text, p_started timestamptz, p_error text)
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p duet.pipelines;
BEGIN
    UPDATE duet.pipelines SET state = 'error', last_error = p_error, last_run_at = clock_timestamp()
     WHERE id = p_id
    RETURNING * INTO p;
    INSERT INTO duet.pipeline_runs (pipeline_id, tenant, kind, status, started_at, position, error)
    VALUES (p.id, p.tenant, p_kind, 'error', p_started, p.position, p_error);
END $$;
COMMENT ON FUNCTION duet.duet_pipeline_failed(bigint, text, timestamptz, text) IS
    'internal: records a failed pipeline run and stops the pipeline';
REVOKE ALL ON FUNCTION duet.duet_pipeline_failed(bigint, text, timestamptz, text) FROM PUBLIC;

------------------------------------------------------------------------------------------------
-- C functions
------------------------------------------------------------------------------------------------

CREATE FUNCTION duet.duet_pipeline_check_expr(expr text, what text) RETURNS void
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'duet_pipeline_check_expr';
COMMENT ON FUNCTION duet.duet_pipeline_check_expr(text, text) IS
    'internal: raises unless expr is one SQL expression (or "=" and a valid Duet formula)';
REVOKE ALL ON FUNCTION duet.duet_pipeline_check_expr(text, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_validate(caller oid, sql text) RETURNS void
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'duet_pipeline_validate';
COMMENT ON FUNCTION duet.duet_pipeline_validate(oid, text) IS
    'internal: plans a pipeline run''s statement as the caller (EXPLAIN), raising what does not resolve';
REVOKE ALL ON FUNCTION duet.duet_pipeline_validate(oid, text) FROM PUBLIC;

CREATE FUNCTION duet.duet_pipeline_wake() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'duet_pipeline_wake';
COMMENT ON FUNCTION duet.duet_pipeline_wake() IS
    'internal: statement trigger on pipeline sources; wakes the pipeline worker when the transaction commits';
REVOKE ALL ON FUNCTION duet.duet_pipeline_wake() FROM PUBLIC;
