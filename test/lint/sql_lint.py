#!/usr/bin/env python3
"""Extension-SQL lint (pgspot cannot be installed here): the rules of SECURITY.md, checked on text.

C (pg_duet/*.c): every SQL text handed to SPI -- adjacent string literals that begin with SELECT,
INSERT, UPDATE, DELETE or WITH -- names every object with its schema: relations and functions
(duet.rules, pg_catalog.now()), casts (::pg_catalog.text) and operators (OPERATOR(pg_catalog.=)).
Such text runs as the extension owner, a superuser or a worker; qualified, it resolves nothing the
caller can create whatever search_path is in force.

SQL (the install and update scripts): every SECURITY DEFINER function and every function of schema
duet (the owner's internal functions) has SET search_path = pg_catalog, pg_temp; in those bodies a
relation, type or function outside pg_catalog is named with its schema (pg_catalog comes first, so
operators and pg_catalog names are safe unqualified; anything else would be looked up in pg_temp);
no CREATE OR REPLACE in an install script (a user could have created the object first); no object in schema public.

And no C file but privileged.c switches the user id (SetUserIdAndSecContext).

Prints one line per finding and "N passed, N failed" (a test per rule, over every file).
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

SQL_START = re.compile(r"^\s*\(?\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b")   # SQL in C is upper case
KEYWORDS = {
    "select", "from", "where", "and", "or", "not", "in", "is", "null", "as", "on", "join", "left",
    "right", "inner", "outer", "full", "cross", "using", "order", "by", "group", "having", "limit",
    "offset", "insert", "into", "values", "update", "set", "delete", "returning", "with", "distinct",
    "case", "when", "then", "else", "end", "true", "false", "exists", "any", "all", "coalesce",
    "nullif", "greatest", "least", "cast", "over", "filter", "conflict", "do", "nothing", "excluded",
    "for", "share", "nowait", "skip", "locked", "asc", "desc", "nulls", "first", "last", "ordinality",
    "lateral", "union", "except", "intersect", "between", "like", "ilike", "similar", "escape",
    "interval", "array", "row", "only", "default", "collate", "at", "time", "zone", "extract",
    "epoch", "recursive", "materialized", "primary", "key", "if", "of", "to", "partition",
    "window", "rows", "range", "preceding", "following", "unbounded", "current", "grouping",
}
OPERATOR_CHARS = re.compile(r"[=<>!+\-*/|#@~%^&]+")


def c_sql_texts(text):
    """(line, sql) for each run of adjacent C string literals that starts like SQL."""
    out = []
    # Strip comments, keep line numbers.
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    lit = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
    pos = 0
    while True:
        m = lit.search(text, pos)
        if not m:
            break
        start_line = text.count("\n", 0, m.start()) + 1
        parts = [m.group(1)]
        end = m.end()
        while True:
            n = re.match(r'\s*(?:[A-Z_][A-Z_0-9]*\s*\([^()"]*\)\s*)?"((?:[^"\\\n]|\\.)*)"', text[end:])
            if not n:
                break
            parts.append(n.group(1))
            end += n.end()
        pos = end
        sql = "".join(parts).replace('\\"', '"').replace("\\n", " ")
        if SQL_START.match(sql):
            out.append((start_line, sql))
    return out


def strip_quoted(sql):
    """SQL with comments removed, string literals and quoted identifiers blanked ('' and q), and
    OPERATOR(pg_catalog.x) replaced by OPQ."""
    out, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == c and sql.startswith(c * 2, j):
                    j += 2
                elif sql[j] == c:
                    break
                else:
                    j += 1
            out.append("''" if c == "'" else "q")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return re.sub(r"OPERATOR\(\s*pg_catalog\.[^)]*\)", " OPQ ", "".join(out))


def check_c_sql(sql):
    problems = []
    s = strip_quoted(sql)
    s = s.replace("%s.", "schema.")        # psprintf with a quoted schema name
    s = re.sub(r"\$\d+", " P ", s)
    s = re.sub(r"%[a-z]+", " P ", s)
    for m in re.finditer(r"::\s*([A-Za-z_][\w]*)(\.)?", s):
        if not m.group(2):
            problems.append("unqualified cast ::%s" % m.group(1))
    s_nocast = re.sub(r"::\s*[\w.]+(\[\])?", " ", s)
    # UPDATE ... SET col = expr, col = expr: assignments, not operators.
    def assignments(m):
        return re.sub(r"(^|,)(\s*(?:\w+|q)\s*)=", r"\1\2 ASSIGN ", m.group(1)) + m.group(2)
    s_nocast = re.sub(r"(?is)(?<=\bSET\b)(.*?)(\bWHERE\b|\bRETURNING\b|\bFROM\b|$)", assignments, s_nocast)
    for m in OPERATOR_CHARS.finditer(s_nocast):
        op = m.group(0)
        before = s_nocast[:m.start()].rstrip()
        after = s_nocast[m.end():].lstrip()
        if op == "=>":                      # named argument notation
            continue
        if op == "*" and (before.endswith("(") or before.endswith(".") or
                          re.search(r"\bSELECT$", before, re.I) or before.endswith(",")):
            continue
        problems.append("unqualified operator %s" % op)
    # OPERATOR(x) has one precedence for all x, left-associative: a OPERATOR(<) b OPERATOR(-) c
    # means (a < b) - c. Two in one operand list need parentheses.
    depth, seen = 0, {}
    for tok in re.finditer(r"\(|\)|\bOPQ\b|\b(?:AND|OR|NOT|WHERE|SET|THEN|WHEN|ELSE|END|ON|SELECT|FROM|"
                           r"BY|LIMIT|RETURNING|VALUES|IS|IN|BETWEEN)\b|,", s, re.I):
        t = tok.group(0)
        if t == "(":
            depth += 1
        elif t == ")":
            seen.pop(depth, None)
            depth -= 1
        elif t == "OPQ":
            if seen.get(depth):
                problems.append("two OPERATOR() in a row without parentheses (they bind alike, left to right)")
            seen[depth] = True
        else:
            seen[depth] = False
    ctes = {m.group(1).lower() for m in re.finditer(r"(?:WITH|,)\s+(\w+)\s+AS\s*\(", s, re.I)}
    for m in re.finditer(r"\b(FROM|JOIN|INTO|UPDATE|USING)\s+([A-Za-z_][\w]*)(\s*\.)?", s, re.I):
        name = m.group(2)
        if re.search(r"\b(epoch|year|month|day|hour|minute|second)\s*$", s[:m.start()], re.I):
            continue                        # extract(field FROM x)
        if m.group(3) or name.lower() in ctes or name.lower() in KEYWORDS or name == "P":
            continue
        problems.append("unqualified relation %s" % name)
    for m in re.finditer(r"([A-Za-z_][\w]*)(\s*\.\s*[A-Za-z_]\w*)?\s*\(", s):
        name, qual = m.group(1), m.group(2)
        before = s[:m.start()].rstrip()
        if qual or before.endswith(".") or name.lower() in KEYWORDS or name in ("OPQ", "P"):
            continue
        if re.search(r"\bAS$", before, re.I) or re.search(r"\bUSING$", before, re.I):
            continue                        # a CTE or an alias's column list
        if re.search(r"\bINTO\s+[\w.]+$", before, re.I) or re.search(r"\bON\s+CONFLICT$", before, re.I):
            continue                        # INSERT INTO t (cols), ON CONFLICT (cols)
        if re.search(r"(\bAS\s+)?\b\w+$", before) and re.search(r"\b(AS)\s+\w+$", before + " " + name, re.I):
            continue
        problems.append("unqualified function %s()" % name)
    return problems


def sql_functions(text):
    """(line, header, body) of each CREATE FUNCTION in an SQL script."""
    out = []
    for m in re.finditer(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.]+)\s*\(", text, re.I):
        start = m.start()
        body_m = re.compile(r"AS\s+(\$\w*\$)(.*?)\1", re.S | re.I).search(text, start)
        c_m = re.compile(r"AS\s+'MODULE_PATHNAME'", re.I).search(text, start)
        if c_m and (not body_m or c_m.start() < body_m.start()):
            end = text.find(";", c_m.end())
            header = text[start:end]
            body = ""
        elif body_m:
            header = text[start:body_m.start()] + text[body_m.end():text.find(";", body_m.end())]
            body = body_m.group(2)
        else:
            continue
        out.append((text.count("\n", 0, start) + 1, m.group(1), header, body))
    return out


PG_TYPES = {
    "text", "jsonb", "json", "int", "int2", "int4", "int8", "integer", "bigint", "smallint", "boolean",
    "bool", "oid", "regclass", "regrole", "regproc", "regprocedure", "regtype", "regnamespace", "name",
    "timestamptz", "timestamp", "date", "interval", "numeric", "float8", "float4", "double",
    "real", "bytea", "char", "varchar", "uuid", "inet", "record", "void", "trigger", "anyelement",
    "xid", "tid", "bit", "aclitem", "information_schema",
}


def check_sql_function(name, header, body):
    problems = []
    definer = re.search(r"\bSECURITY\s+DEFINER\b", header, re.I)
    internal = name.lower().startswith("duet.")
    pinned = re.search(r"SET\s+search_path\s*(=|TO)\s*pg_catalog\s*,\s*pg_temp\b", header, re.I)
    if (definer or internal) and body and not pinned:
        problems.append("%s %s without SET search_path = pg_catalog, pg_temp" %
                        ("SECURITY DEFINER function" if definer else "internal function", name))
    if pinned and body:
        s = strip_quoted(body)
        ctes = {m.group(1).lower() for m in re.finditer(r"(?:WITH|,)\s+(\w+)\s+AS\s*\(", s, re.I)}
        for m in re.finditer(r"\b(FROM|JOIN|INTO|UPDATE|TABLE)\s+([A-Za-z_]\w*)(\s*\.)?", s, re.I):
            rel = m.group(2).lower()
            if (m.group(3) or rel in ctes or rel in KEYWORDS or rel.startswith("pg_")
                    or rel in ("strict", "temp", "temporary")):
                continue
            if s[m.end():].lstrip().startswith("("):
                continue                        # a set-returning function: never found in pg_temp
            if m.group(1).upper() == "INTO":   # PL/pgSQL SELECT ... INTO variable
                continue
            problems.append("%s: unqualified relation %s" % (name, m.group(2)))
        for m in re.finditer(r"::\s*([A-Za-z_]\w*)(\s*\.)?", s):
            if not m.group(2) and m.group(1).lower() not in PG_TYPES:
                problems.append("%s: cast to unqualified type %s" % (name, m.group(1)))
    return problems


# Each rule must catch what it is for: snippets that must be flagged, and their fixed forms.
SELF_TEST_C = [
    ("SELECT id FROM duet.rules WHERE target = $1", True),
    ("SELECT id FROM duet.rules WHERE target OPERATOR(pg_catalog.=) $1", False),
    ("SELECT labels::text FROM duet.alerts", True),
    ("SELECT labels::pg_catalog.text FROM duet.alerts", False),
    ("SELECT id FROM rules", True),
    ("SELECT now()", True),
    ("SELECT pg_catalog.now()", False),
    ("UPDATE duet.kafka_outbox SET sent_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1", False),
    ("DELETE FROM duet.ask_log WHERE at < pg_catalog.now()", True),
    ("SELECT x FROM pg_catalog.jsonb_each($1) WHERE value #>> '{}' IS NULL", True),
    ("DELETE FROM duet.t WHERE at OPERATOR(pg_catalog.<) pg_catalog.now() OPERATOR(pg_catalog.-) $1", True),
    ("DELETE FROM duet.t WHERE at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $1)", False),
]
SELF_TEST_SQL = [
    ("duet_x", "CREATE FUNCTION duet_x() RETURNS void LANGUAGE sql SECURITY DEFINER", "SELECT 1", True),
    ("duet_x", "CREATE FUNCTION duet_x() RETURNS void LANGUAGE sql SECURITY DEFINER "
     "SET search_path = pg_catalog, pg_temp", "SELECT 1", False),
    ("duet.duet_y", "CREATE FUNCTION duet.duet_y() RETURNS void LANGUAGE plpgsql", "BEGIN END", True),
    ("duet.duet_y", "CREATE FUNCTION duet.duet_y() LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp",
     "BEGIN DELETE FROM rules; END", True),
    ("duet.duet_y", "CREATE FUNCTION duet.duet_y() LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp",
     "BEGIN PERFORM x::my_domain; END", True),
    ("duet.duet_y", "CREATE FUNCTION duet.duet_y() LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp",
     "BEGIN DELETE FROM duet.rules WHERE id = 1::bigint; END", False),
]


def self_test():
    bad = 0
    for sql, flagged in SELF_TEST_C:
        if bool(check_c_sql(sql)) != flagged:
            print("self-test FAIL: C text %r should %sbe flagged" % (sql, "" if flagged else "not "))
            bad += 1
    for name, header, body, flagged in SELF_TEST_SQL:
        if bool(check_sql_function(name, header, body)) != flagged:
            print("self-test FAIL: function %s %r should %sbe flagged" % (name, body, "" if flagged else "not "))
            bad += 1
    if not c_sql_texts('x = SPI_execute("SELECT a "\n "FROM t WHERE b = 1", true, 0);'):
        print("self-test FAIL: adjacent C literals not joined")
        bad += 1
    return bad


def main():
    bad = self_test()
    results = [("lint self-test: every rule flags its bad example and passes its good one",
                ["%d self-test case(s) failed" % bad] if bad else [])]
    cdir = os.path.join(ROOT, "pg_duet")
    for f in sorted(os.listdir(cdir)):
        if not f.endswith(".c"):
            continue
        text = open(os.path.join(cdir, f), encoding="utf-8").read()
        probs = []
        for line, sql in c_sql_texts(text):
            for p in check_c_sql(sql):
                probs.append("pg_duet/%s:%d: %s in: %s" % (f, line, p, sql[:100]))
        results.append(("SPI text in C names every object with its schema", probs))
        if f != "privileged.c":
            results.append(("only privileged.c switches the user id",
                            ["pg_duet/%s:%d: SetUserIdAndSecContext outside privileged.c" %
                             (f, text.count("\n", 0, m.start()) + 1)
                             for m in re.finditer(r"\bSetUserIdAndSecContext\s*\(", text)]))
    scripts = sorted([os.path.join("pg_duet/sql", f) for f in os.listdir(os.path.join(ROOT, "pg_duet/sql"))
                      if f.endswith(".sql")] +
                     [os.path.join("pg_duet", f) for f in os.listdir(cdir)
                      if re.match(r"pg_duet--.*--.*\.sql$", f)])
    for rel in scripts:
        text = open(os.path.join(ROOT, rel), encoding="utf-8").read()
        probs = []
        # In an update script, replacing is how a function changes, and PostgreSQL refuses to
        # replace an object that is not already a member of the extension.
        for m in (re.finditer(r"CREATE\s+OR\s+REPLACE\b", text, re.I) if "--" not in os.path.basename(rel) else []):
            probs.append("%s:%d: CREATE OR REPLACE" % (rel, text.count("\n", 0, m.start()) + 1))
        for m in re.finditer(r"CREATE\s+(?:TABLE|VIEW|FUNCTION|TYPE|DOMAIN)\s+public\.", text, re.I):
            probs.append("%s:%d: object in schema public" % (rel, text.count("\n", 0, m.start()) + 1))
        results.append(("no CREATE OR REPLACE in an install script, nothing in schema public", probs))
        probs = []
        for line, name, header, body in sql_functions(text):
            for p in check_sql_function(name, header, body):
                probs.append("%s:%d: %s" % (rel, line, p))
        results.append(("owner-run SQL functions pin search_path and qualify what pg_catalog lacks", probs))
    merged = {}
    for label, probs in results:            # one test per rule, over every file
        merged.setdefault(label, []).extend(probs)
    results = list(merged.items())
    failed = 0
    for label, probs in results:
        if probs:
            failed += 1
            print("FAIL: %s" % label)
            for p in probs:
                print("  " + p)
        else:
            print("ok: %s" % label)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
