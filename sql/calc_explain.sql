-- calc: duet_formula_explain(formula) prints the bytecode listing, one line per instruction.
-- a ratio is one superinstruction on two variables
SELECT duet_formula_explain('clicks / impressions');
-- a formula that is one variable
SELECT duet_formula_explain('spend');
-- constants are folded; what remains names its constant
SELECT duet_formula_explain('1 + 2 * 3');
SELECT duet_formula_explain('round(revenue * 100, 2) || '' %''');
-- case arms: forward jumps; comparisons with a constant; clamp with constant bounds
SELECT duet_formula_explain('case when budget is null or budget = 0 then null else clamp(spend / (budget * elapsed / period), 0, 2) end');
-- generic instructions: in, between, calls, strings
SELECT duet_formula_explain('country not in (''FR'', ''DE'') and score between 1 and 9 and abs(score) > 1 and x is not null and lower(y) = ''a''');
-- one line per instruction, numbered from 0
SELECT count(*) AS lines FROM regexp_split_to_table(duet_formula_explain('a + b * c - d'), E'\n') AS l
 WHERE l ~ '^ +[0-9]+  \[';
-- an invalid formula raises the same error as duet_calc
SELECT duet_formula_explain('revenue / / spend');
SELECT duet_formula_explain('nosuch(1)');
-- NULL in, NULL out
SELECT duet_formula_explain(NULL) IS NULL AS null_formula;
