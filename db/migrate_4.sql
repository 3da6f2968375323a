-- migrate_4.sql: schema version 3 -> 4.
--
-- The one change: a variant is identified by (problem, op, spec), not by
-- (problem, spec), so that a backward variant may carry the same spec as a
-- forward one (both read the same tunables; their kernels differ). SQLite
-- cannot change a UNIQUE constraint in place, so the table is rebuilt with
-- the same columns, rows and ids: results and winners refer to variants by
-- id and stay valid. db_open.c runs this inside the transaction that sets
-- user_version to 4, before it turns foreign keys on (dropping a table that
-- others refer to would otherwise delete through them).

CREATE TABLE variants_v4 (
	id          INTEGER PRIMARY KEY,
	problem_id  INTEGER NOT NULL REFERENCES problems (id),
	spec        TEXT NOT NULL CHECK (spec <> ''),
	op          TEXT NOT NULL DEFAULT 'fwd' CHECK (op IN ('fwd', 'bwd', 'decode')),
	source_hash TEXT NOT NULL DEFAULT '',
	compile_status TEXT NOT NULL DEFAULT 'unknown'
		CHECK (compile_status IN ('unknown', 'ok', 'failed')),
	compile_target TEXT NOT NULL DEFAULT '',
	registers    INTEGER,
	spill_stores INTEGER,
	spill_loads  INTEGER,
	shared_bytes INTEGER,
	stack_bytes  INTEGER,
	compile_ms   REAL,
	compile_log  TEXT,
	UNIQUE (problem_id, op, spec)
);
INSERT INTO variants_v4 (id, problem_id, spec, op, source_hash, compile_status,
	compile_target, registers, spill_stores, spill_loads, shared_bytes, stack_bytes,
	compile_ms, compile_log)
	SELECT id, problem_id, spec, op, source_hash, compile_status, compile_target,
	registers, spill_stores, spill_loads, shared_bytes, stack_bytes, compile_ms,
	compile_log FROM variants;
DROP TABLE variants;
ALTER TABLE variants_v4 RENAME TO variants;
