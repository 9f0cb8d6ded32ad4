-- calc: duet_formula_check(formula) reports validity and positioned errors without raising.
\x on
SELECT * FROM duet_formula_check('revenue / nullif(spend, 0)');
SELECT * FROM duet_formula_check('clicks / impressions > 0.02 and "Campaign Name" = ''x''');
SELECT * FROM duet_formula_check('revenue / / spend');
SELECT * FROM duet_formula_check(E'clicks /\n  (impressions +');
SELECT * FROM duet_formula_check('nosuch(1)');
SELECT * FROM duet_formula_check('round(1, 2, 3)');
SELECT * FROM duet_formula_check('''a'' * 2');
SELECT * FROM duet_formula_check('');
\x off
-- usable as a constraint: only valid formulas are stored
CREATE TABLE calc_check_metric (name text PRIMARY KEY,
    formula text NOT NULL CHECK ((duet_formula_check(formula)).valid));
INSERT INTO calc_check_metric VALUES ('ctr', 'clicks / impressions');
INSERT INTO calc_check_metric VALUES ('bad', 'clicks / ');
SELECT name, (duet_formula_check(formula)).variables FROM calc_check_metric;
DROP TABLE calc_check_metric;
-- NULL in, NULL out
SELECT duet_formula_check(NULL) IS NULL AS null_formula;
