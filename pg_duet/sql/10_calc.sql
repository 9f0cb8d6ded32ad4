-- pg_duet install script, part 10: the Duet formula engine in SQL (calc_*.c, DESIGN §4).

-- Planner support: rewrites duet_calc(f, row) to duet_calc_args(f, col, …) when that is equivalent.
CREATE FUNCTION duet_calc_support(internal) RETURNS internal
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_support';
COMMENT ON FUNCTION duet_calc_support(internal) IS
'planner support for duet_calc(formula, row): passes only the columns a constant formula reads';

CREATE FUNCTION duet_calc(formula text, vars jsonb) RETURNS jsonb
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_jsonb';
COMMENT ON FUNCTION duet_calc(text, jsonb) IS
'evaluates a Duet formula with variables from a jsonb object (numbers, strings, booleans, null); the result is a jsonb number, string, boolean or null';

CREATE FUNCTION duet_calc(formula text, "row" anyelement) RETURNS jsonb
    LANGUAGE c STABLE STRICT PARALLEL SAFE SUPPORT duet_calc_support
    AS 'MODULE_PATHNAME', 'duet_calc_row';
COMMENT ON FUNCTION duet_calc(text, anyelement) IS
'evaluates a Duet formula with variables bound by name to the columns of a row (number, text, boolean, date and timestamp columns); the result is a jsonb number, string (a date or timestamp as its text), boolean or null';

CREATE FUNCTION duet_calc_number(formula text, vars jsonb) RETURNS double precision
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_number_jsonb';
COMMENT ON FUNCTION duet_calc_number(text, jsonb) IS
'evaluates a numeric Duet formula with variables from a jsonb object; a null result is SQL NULL, a string or boolean result an error';

CREATE FUNCTION duet_calc_number(formula text, "row" anyelement) RETURNS double precision
    LANGUAGE c STABLE STRICT PARALLEL SAFE SUPPORT duet_calc_support
    AS 'MODULE_PATHNAME', 'duet_calc_number_row';
COMMENT ON FUNCTION duet_calc_number(text, anyelement) IS
'evaluates a numeric Duet formula with variables bound by name to the columns of a row; a null result is SQL NULL, a string or boolean result an error';

-- Positional variables: value i binds the formula's i-th variable in order of first appearance.
-- Not strict: a NULL value is a NULL variable.
CREATE FUNCTION duet_calc_args(formula text, VARIADIC "values" "any") RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_args';
COMMENT ON FUNCTION duet_calc_args(text, "any") IS
'evaluates a Duet formula with its variables bound positionally, in order of first appearance (see duet_formula_check().variables); the result is a jsonb number, string, boolean or null';

CREATE FUNCTION duet_calc_number_args(formula text, VARIADIC "values" "any") RETURNS double precision
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_calc_number_args';
COMMENT ON FUNCTION duet_calc_number_args(text, "any") IS
'evaluates a numeric Duet formula with its variables bound positionally, in order of first appearance; a null result is SQL NULL, a string or boolean result an error';

CREATE FUNCTION duet_formula_check(formula text,
        OUT valid boolean, OUT error_class text, OUT message text, OUT line integer, OUT col integer,
        OUT expected text, OUT excerpt text, OUT variables text[], OUT result_type text)
    RETURNS record
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_formula_check';
COMMENT ON FUNCTION duet_formula_check(text) IS
'checks a Duet formula without raising: validity, error class, message, 1-based line and column, expected token and caret excerpt, or the variables it reads and its result type';

CREATE FUNCTION duet_calc_cache_stats(
        OUT entries integer, OUT lookups bigint, OUT compiles bigint, OUT evictions bigint)
    RETURNS record
    LANGUAGE c VOLATILE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'duet_calc_cache_stats';
COMMENT ON FUNCTION duet_calc_cache_stats() IS
'this backend''s cache of compiled formulas: programs cached, lookups, compiles (misses) and evictions since the backend started';

-- The disassembler: the compiled program as text, one line per instruction (docs/calc.md).
CREATE FUNCTION duet_formula_explain(formula text) RETURNS text
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'duet_formula_explain';
COMMENT ON FUNCTION duet_formula_explain(text) IS
'the bytecode listing of a Duet formula, as luac -l prints Lua: one line per instruction with its index, source position, opcode, operands and the constant, variable, builtin or jump target they name; an invalid formula raises its error';
