-- config definitions: every keyword enforced, errors name the key, the keyword and the path
CREATE ROLE config_def_a LOGIN;
SELECT duet_tenant_create('cdef-a');
SELECT duet_tenant_add_member('cdef-a', 'config_def_a');
SELECT duet_config_define('cdef.bid', '{"type": "number", "minimum": 0.01, "maximum": 100}', 'maximum bid in USD');
SELECT duet_config_define('cdef.level', '{"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}');
SELECT duet_config_define('cdef.mode', '{"enum": ["off", "shadow", "on"]}', 'rollout mode');
SELECT duet_config_define('cdef.code', '{"type": "string", "pattern": "^[A-Z]{3}$", "minLength": 3, "maxLength": 3}');
SELECT duet_config_define('cdef.email', '{"type": ["string", "null"], "pattern": "@"}');
SELECT duet_config_define('cdef.pacing', $${
    "type": "object",
    "required": ["strategy", "limits"],
    "additionalProperties": false,
    "properties": {
        "strategy": {"enum": ["even", "asap"]},
        "limits": {"type": "array", "minItems": 1, "maxItems": 3,
                   "items": {"type": "object", "required": ["hour"],
                             "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23}}}},
        "note": {"type": "string", "description": "free text"}
    }
}$$, 'pacing strategy and hourly limits');
SELECT key, schema ->> 'type' AS type, description, updated_by FROM duet.config_definitions WHERE key LIKE 'cdef.%' ORDER BY key;
SET ROLE config_def_a;
-- valid values pass
SELECT duet_config_set('cdef.bid', '2.5') > 0 AS ok, duet_config_set('cdef.level', '9') > 0 AS ok,
       duet_config_set('cdef.mode', '"shadow"') > 0 AS ok, duet_config_set('cdef.code', '"USD"') > 0 AS ok,
       duet_config_set('cdef.email', 'null') > 0 AS ok, duet_config_set('cdef.email', '"ops@acme.test"') > 0 AS ok;
SELECT duet_config_set('cdef.pacing', '{"strategy": "even", "limits": [{"hour": 0}, {"hour": 23}], "note": "x"}') > 0 AS ok;
-- each keyword, violated
SELECT duet_config_set('cdef.bid', '"12"');                 -- type
SELECT duet_config_set('cdef.bid', '0');                    -- minimum
SELECT duet_config_set('cdef.bid', '100.5');                -- maximum
SELECT duet_config_set('cdef.level', '2.5');                -- type integer
SELECT duet_config_set('cdef.level', '0');                  -- exclusiveMinimum
SELECT duet_config_set('cdef.level', '10');                 -- exclusiveMaximum
SELECT duet_config_set('cdef.mode', '"maybe"');             -- enum
SELECT duet_config_set('cdef.code', '"usd"');               -- pattern
SELECT duet_config_set('cdef.code', '"US"');                -- minLength
SELECT duet_config_set('cdef.code', '"EURO"');              -- maxLength
SELECT duet_config_set('cdef.email', '42');                 -- type list
SELECT duet_config_set('cdef.pacing', '{"limits": [{"hour": 1}]}');                          -- required
SELECT duet_config_set('cdef.pacing', '{"strategy": "even", "limits": [], "x": 1}');         -- additionalProperties
SELECT duet_config_set('cdef.pacing', '{"strategy": "even", "limits": []}');                 -- minItems
SELECT duet_config_set('cdef.pacing', '{"strategy": "even", "limits": [{"hour": 1}, {"hour": 2}, {"hour": 3}, {"hour": 4}]}'); -- maxItems
SELECT duet_config_set('cdef.pacing', '{"strategy": "even", "limits": [{"hour": 1}, {"hour": 24}]}');  -- nested maximum
SELECT duet_config_set('cdef.pacing', '{"strategy": "slow", "limits": [{"hour": 1}]}');       -- nested enum
SELECT duet_config_set('cdef.pacing', '{"strategy": "even", "limits": [{}]}');                -- nested required
SELECT duet_config_set('cdef.pacing', '[1, 2]');                                              -- object expected
-- a failed write changes nothing
SELECT duet_config_get('cdef.bid'), (SELECT max(version) FROM duet.config_history WHERE key = 'cdef.bid') AS last_version;
-- a rollback to a value the current definition no longer admits is refused
SELECT duet_config_set('cdef.bid', '50') AS v2, duet_config_set('cdef.bid', '4') AS v3;
RESET ROLE;
SELECT duet_config_define('cdef.bid', '{"type": "number", "minimum": 0.01, "maximum": 5}');
SET ROLE config_def_a;
SELECT duet_config_rollback('cdef.bid', 2);
SELECT duet_config_rollback('cdef.bid', 1) AS v4, duet_config_get('cdef.bid');
-- a definition that stored values violate is refused, naming the tenant or the default
RESET ROLE;
SELECT duet_config_define('cdef.bid', '{"type": "number", "maximum": 1}');
SELECT duet_config_set_default('cdef.mode', '"off"');
SELECT duet_config_define('cdef.mode', '{"enum": ["on"]}');
-- validate without writing
SELECT duet_config_validate('cdef.mode', '"on"'), duet_config_validate('cdef.undefined', '{"any": 1}');
SELECT duet_config_validate('cdef.mode', '"no"');
SELECT duet_config_schema_validate('{"type": "string"}', '1');
-- bad schemas are refused, with what is wrong
SELECT duet_config_define('cdef.bad', '{"maximun": 5}');
SELECT duet_config_define('cdef.bad', '{"type": "float"}');
SELECT duet_config_define('cdef.bad', '{"type": []}');
SELECT duet_config_define('cdef.bad', '{"minimum": "5"}');
SELECT duet_config_define('cdef.bad', '{"enum": []}');
SELECT duet_config_define('cdef.bad', '{"pattern": "(["}');
SELECT duet_config_define('cdef.bad', '{"required": "a"}');
SELECT duet_config_define('cdef.bad', '{"properties": {"a": 5}}');
SELECT duet_config_define('cdef.bad', '{"items": {"type": "nope"}}');
SELECT duet_config_define('cdef.bad', '{"maxLength": -1}');
SELECT duet_config_define('cdef.bad', '[]');
SELECT duet_config_define('cdef.bad', NULL);
SELECT duet_config_define('Bad Key', '{}');
SELECT duet_config_schema_check('{"type": "string", "title": "t", "default": "x", "examples": ["y"], "$comment": "c"}');
-- a schema given straight to duet_config_schema_validate is checked before it is trusted
SELECT duet_config_schema_validate('{"minimum": "a"}', '1');
-- definitions are for administrators; everyone can read them
SET ROLE config_def_a;
SELECT duet_config_define('cdef.mine', '{}');
SELECT duet_config_undefine('cdef.bid');
SELECT count(*) > 0 AS readable FROM duet.config_definitions WHERE key LIKE 'cdef.%';
RESET ROLE;
SELECT duet_config_undefine('cdef.code');
SELECT duet_config_undefine('cdef.code');
-- clean up
DELETE FROM duet.config WHERE key LIKE 'cdef.%';
DELETE FROM duet.config_history WHERE key LIKE 'cdef.%';
DELETE FROM duet.config_definitions WHERE key LIKE 'cdef.%';
DELETE FROM duet.tenants WHERE name LIKE 'cdef-%';
DROP ROLE config_def_a;
