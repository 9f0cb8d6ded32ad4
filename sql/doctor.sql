-- doctor: duet_doctor() names each problem with its fix. The regression database is not in
-- duet.databases, so the workers do not serve it: that is what it must say.
SELECT check_name, status, detail, hint FROM duet_doctor() WHERE check_name = 'background workers';
SELECT check_name, status FROM duet_doctor() ORDER BY check_name;
-- and it is callable by anyone: it shows only what the caller may see
CREATE ROLE doctor_nobody;
SET ROLE doctor_nobody;
SELECT check_name, status, detail FROM duet_doctor() WHERE status = 'skipped' ORDER BY check_name;
RESET ROLE;
DROP ROLE doctor_nobody;
