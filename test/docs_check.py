#!/usr/bin/env python3
"""docs_check.py — the documentation checks of test/suites/25-docs.sh, on the running cluster.

Uses psql ($PSQL) with libpq's PGHOST/PGPORT/PGUSER (set by test/check.sh) and a scratch database
it creates and drops. Prints one line per test ("ok NAME" / "FAILED NAME" with the reason) and ends
with "N passed, N failed". Standard library only.

  settings        docs/settings.md's table = the duet.* rows of pg_settings (type, default, unit,
                  range, context) and nothing else
  sql-reference   docs/sql-reference.md = docs/gen_reference.py's output on a fresh install
  meta-json       META.json has the keys and types the PGXN META spec v1.0.0 requires, and its
                  versions agree with pg_duet.control
  update-script   every statement of pg_duet/sql/90_comments.sql and 95_cleanup.sql is also in
                  the update script pg_duet--0.1.0--0.2.0.sql, in the same order
  links           every relative link in README.md and docs/*.md points at a file that exists
  uninstall       duet_uninstall() in the last database using pg_duet also drops its roles
  troubleshooting every message pg_duet raises (ereport in pg_duet/*.c, RAISE and MESSAGE in
                  pg_duet/sql/*.sql) is in docs/troubleshooting.md, with "…" for what it fills in
"""
import difflib
import json
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PSQL = os.environ.get("PSQL", "psql")
SCRATCH = "duet_docs_check"
results = []


def psql(sql, db="postgres", check=True):
    p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if check and p.returncode != 0:
        raise RuntimeError("psql: %s" % p.stderr.strip())
    return p.stdout


def test(fn):
    name = fn.__name__.replace("test_", "").replace("_", "-")
    try:
        problems = fn() or []
    except Exception as e:  # noqa: BLE001 -- a crashed test is a failed test
        problems = ["%s: %s" % (type(e).__name__, e)]
    results.append((name, problems))
    print(("ok %s" % name) if not problems else ("FAILED %s" % name))
    for p in problems[:40]:
        print("    " + p)
    return fn


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def test_settings():
    rows = json.loads(psql("SELECT json_agg(json_build_object('name', name, 'type', vartype, "
                           "'default', coalesce(boot_val, ''), 'unit', coalesce(unit, ''), "
                           "'range', CASE WHEN min_val IS NULL THEN '' ELSE min_val || ' – ' || max_val END, "
                           "'context', context) ORDER BY name) FROM pg_settings WHERE name LIKE 'duet.%'"))
    actual = {r["name"]: r for r in rows}
    documented = {}
    problems = []
    for line in read("docs/settings.md").splitlines():
        m = re.match(r"^\|\s*`(duet\.[a-z0-9_.]+)`\s*\|(.*)\|\s*$", line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(2).split("|")]
        if len(cells) != 5:
            problems.append("malformed row: " + line)
            continue
        documented[m.group(1)] = {"type": cells[0], "default": cells[1].strip("`"), "unit": cells[2],
                                  "range": cells[3], "context": cells[4]}
    for name in sorted(set(actual) - set(documented)):
        problems.append("%s is in pg_settings but not in docs/settings.md" % name)
    for name in sorted(set(documented) - set(actual)):
        problems.append("%s is in docs/settings.md but not in pg_settings" % name)
    for name in sorted(set(actual) & set(documented)):
        for field in ("type", "default", "unit", "range", "context"):
            if actual[name][field] != documented[name][field]:
                problems.append("%s: %s is %r in pg_settings, %r in docs/settings.md"
                                % (name, field, actual[name][field], documented[name][field]))
        if not re.search(r"\*\*`%s`\*\*" % re.escape(name), read("docs/settings.md")):
            problems.append("%s has no paragraph (**`%s`** …) in docs/settings.md" % (name, name))
    return problems


def test_sql_reference():
    generated = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "gen_reference.py"), "-d", SCRATCH],
                               check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    committed = read("docs/sql-reference.md")
    if generated == committed:
        return []
    diff = list(difflib.unified_diff(committed.splitlines(), generated.splitlines(),
                                     "docs/sql-reference.md", "generated", lineterm="", n=0))
    return ["docs/sql-reference.md is stale; regenerate: python3 docs/gen_reference.py -d DB > docs/sql-reference.md"] + diff


def test_meta_json():
    problems = []
    meta = json.loads(read("META.json"))
    control = read("pg_duet.control")
    default_version = re.search(r"default_version\s*=\s*'([^']+)'", control).group(1)
    semver = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")

    def want(obj, key, kind, where="META.json"):
        if key not in obj:
            problems.append("%s: required key %r missing" % (where, key))
            return None
        if not isinstance(obj[key], kind):
            problems.append("%s: %r must be %s" % (where, key, getattr(kind, "__name__", kind)))
            return None
        return obj[key]

    for key, kind in (("name", str), ("abstract", str), ("version", str), ("license", (str, list, dict)),
                      ("maintainer", (str, list)), ("provides", dict), ("meta-spec", dict)):
        want(meta, key, kind)
    spec = meta.get("meta-spec", {})
    if spec.get("version") != "1.0.0":
        problems.append("meta-spec.version must be 1.0.0")
    if not semver.match(meta.get("version", "")):
        problems.append("version %r is not a semantic version" % meta.get("version"))
    if meta.get("version") != default_version:
        problems.append("version %r differs from pg_duet.control's default_version %r"
                        % (meta.get("version"), default_version))
    licenses = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd", "gfdl_1_2",
                "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit", "mozilla_1_0",
                "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay", "sun", "zlib",
                "open_source", "restricted", "unrestricted", "unknown"}
    lic = meta.get("license")
    for l in ([lic] if isinstance(lic, str) else lic if isinstance(lic, list) else []):
        if l not in licenses:
            problems.append("license %r is not a PGXN license string" % l)
    if lic != "postgresql":
        problems.append("license must be postgresql (LICENSE is the PostgreSQL License)")
    for ext, p in (meta.get("provides") or {}).items():
        where = "provides.%s" % ext
        if want(p, "file", str, where) and not os.path.exists(os.path.join(ROOT, p["file"])):
            problems.append("%s.file %r does not exist" % (where, p["file"]))
        if want(p, "version", str, where) and not semver.match(p["version"]):
            problems.append("%s.version %r is not a semantic version" % (where, p["version"]))
        if p.get("version") != default_version:
            problems.append("%s.version differs from pg_duet.control" % where)
        if "docfile" in p and not os.path.exists(os.path.join(ROOT, p["docfile"])):
            problems.append("%s.docfile %r does not exist" % (where, p["docfile"]))
    if "pg_duet" not in (meta.get("provides") or {}):
        problems.append("provides must list pg_duet")
    status = meta.get("release_status")
    if status not in ("stable", "testing", "unstable"):
        problems.append("release_status must be stable, testing or unstable, not %r" % status)
    pg = (((meta.get("prereqs") or {}).get("runtime") or {}).get("requires") or {}).get("PostgreSQL")
    if not isinstance(pg, str) or not re.match(r"^15\.\d+\.\d+$", pg):
        problems.append("prereqs.runtime.requires.PostgreSQL must be a 15.x.y minimum, not %r" % pg)
    for phase, rels in (meta.get("prereqs") or {}).items():
        if phase not in ("configure", "build", "test", "runtime", "develop"):
            problems.append("prereqs phase %r is not in the spec" % phase)
        for rel in rels:
            if rel not in ("requires", "recommends", "suggests", "conflicts"):
                problems.append("prereqs.%s relationship %r is not in the spec" % (phase, rel))
    for key in ("tags",):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(t, str) and 0 < len(t) < 256
                                                                    for t in meta[key])):
            problems.append("%s must be a list of short strings" % key)
    res = meta.get("resources", {})
    for key in res:
        if key not in ("homepage", "bugtracker", "repository"):
            problems.append("resources.%s is not in the spec" % key)
    return problems


def statements(sql):
    """Non-comment lines with text, whitespace-normalised."""
    return [" ".join(l.split()) for l in sql.splitlines() if l.strip() and not l.lstrip().startswith("--")]


def test_update_script():
    delta = statements(read("pg_duet/pg_duet--0.1.0--0.2.0.sql"))
    problems = []
    for part in ("pg_duet/sql/90_comments.sql", "pg_duet/sql/95_cleanup.sql"):
        pos = 0
        for line in statements(read(part)):
            try:
                pos = delta.index(line, pos) + 1
            except ValueError:
                problems.append("%s: not in the update script (in order): %s" % (part, line[:100]))
                break
    return problems


def test_links():
    problems = []
    files = ["README.md", "CHANGELOG.md", "SECURITY.md"] + \
        ["docs/" + f for f in sorted(os.listdir(os.path.join(ROOT, "docs"))) if f.endswith(".md")]
    for f in files:
        text = read(f)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(ROOT, os.path.dirname(f), target))):
                problems.append("%s links to %s, which does not exist" % (f, target))
        if "../shared" in text or "DESIGN.md" in text.replace("docs/design.md", ""):
            problems.append("%s refers to DESIGN.md outside the repository (use docs/design.md)" % f)
    return problems


def code_messages():
    """(where, message with "…" for each placeholder) for every message pg_duet raises."""
    out = []
    lit = r'"((?:[^"\\]|\\.)*)"'
    for f in sorted(os.listdir(os.path.join(ROOT, "pg_duet"))):
        if not f.endswith(".c"):
            continue
        text = read("pg_duet/" + f)
        for m in re.finditer(r"ereport\(\s*(ERROR|WARNING|NOTICE|LOG|FATAL)\b(.*?)\)\s*\)\s*;", text, re.S):
            mm = re.search(r"errmsg\(((?:\s*" + lit + r")+)", m.group(2))
            if not mm:
                continue
            msg = "".join(re.findall(lit, mm.group(1))).replace('\\"', '"')
            msg = re.sub(r"%[-+ #0-9.]*(?:ll|l|z)?[sduifxcm]", "…", msg)
            out.append(("pg_duet/%s:%d" % (f, text.count("\n", 0, m.start()) + 1), msg.strip()))
    for f in sorted(os.listdir(os.path.join(ROOT, "pg_duet", "sql"))):
        text = read("pg_duet/sql/" + f)
        for m in re.finditer(r"(?:RAISE\s+(?:EXCEPTION|WARNING|NOTICE)\s+|MESSAGE\s*=\s*(?:format\()?)'((?:[^']|'')*)'", text):
            msg = m.group(1).replace("''", "'")
            msg = re.sub(r"%[sIL]?", "…", msg)
            out.append(("pg_duet/sql/%s:%d" % (f, text.count("\n", 0, m.start()) + 1), msg.strip()))
    return out


def test_troubleshooting():
    doc = read("docs/troubleshooting.md").replace("\\|", "|")
    return ["%s: %s" % (where, msg) for where, msg in code_messages() if msg and msg not in doc]


def test_uninstall():
    users = psql("SELECT string_agg(DISTINCT d.datname, ', ') FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid "
                 "WHERE s.refobjid IN (SELECT oid FROM pg_roles WHERE rolname IN ('duet_kafka_admin', 'duet_kafka_publisher', 'duet_monitor')) "
                 "AND d.datname <> '" + SCRATCH + "'").strip()
    if users:
        return ["cannot check: database %s already uses the roles (run this suite before 30-regress)" % users]
    out = psql("SELECT array_to_string(duet_uninstall(), ', ')", db=SCRATCH)
    problems = []
    for what in ("extension pg_duet", "role duet_kafka_admin", "role duet_kafka_publisher", "role duet_monitor"):
        if what not in out:
            problems.append("duet_uninstall() did not remove %s: %s" % (what, out.strip()))
    left = psql("SELECT count(*) FROM pg_roles WHERE rolname IN ('duet_kafka_admin', 'duet_kafka_publisher', 'duet_monitor')").strip()
    if left != "0":
        problems.append("%s roles left after the last duet_uninstall()" % left)
    return problems


def main():
    psql("DROP DATABASE IF EXISTS %s" % SCRATCH)
    psql("CREATE DATABASE %s" % SCRATCH)
    psql("CREATE EXTENSION pg_duet", db=SCRATCH)
    try:
        for fn in (test_settings, test_sql_reference, test_meta_json, test_update_script, test_links,
                   test_troubleshooting, test_uninstall):
            test(fn)
    finally:
        psql("DROP DATABASE IF EXISTS %s" % SCRATCH, check=False)
    failed = sum(1 for _, p in results if p)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
