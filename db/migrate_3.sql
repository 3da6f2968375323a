-- migrate_3.sql: schema version 2 -> 3.
--
-- The one change: results.status may be 'env_error', a failure of the machine
-- rather than of the kernel (no compiler, a full disk, out of memory), which
-- a resumed run measures again instead of skipping. SQLite cannot alter a
-- CHECK constraint, so the table is rebuilt with the same columns, rows,
-- ids and index; nothing refers to results, and db_open.c runs this inside
-- the transaction that sets user_version to 3.

CREATE TABLE results_v3 (
	id         INTEGER PRIMARY KEY,
	device_id  INTEGER NOT NULL REFERENCES devices (id),
	variant_id INTEGER NOT NULL REFERENCES variants (id),
	T          INTEGER NOT NULL CHECK (T >= 1),
	B          INTEGER NOT NULL CHECK (B >= 1),
	t_bucket   INTEGER NOT NULL CHECK (t_bucket >= T AND t_bucket < 2 * T),
	status     TEXT NOT NULL CHECK (status IN ('ok', 'verify_failed',
		'compile_failed', 'crashed', 'timeout', 'pruned', 'error', 'env_error')),
	median_ms  REAL,
	p20_ms     REAL,
	p80_ms     REAL,
	min_ms     REAL,
	runs       INTEGER NOT NULL DEFAULT 0,
	rel_err    REAL,
	error      TEXT NOT NULL DEFAULT '',
	run_id     TEXT NOT NULL DEFAULT '',
	started_at REAL,
	recorded_at REAL NOT NULL,
	CHECK (status <> 'ok' OR median_ms IS NOT NULL),
	UNIQUE (device_id, variant_id, T, B)
);
INSERT INTO results_v3 (id, device_id, variant_id, T, B, t_bucket, status, median_ms,
	p20_ms, p80_ms, min_ms, runs, rel_err, error, run_id, started_at, recorded_at)
	SELECT id, device_id, variant_id, T, B, t_bucket, status, median_ms, p20_ms, p80_ms,
	min_ms, runs, rel_err, error, run_id, started_at, recorded_at FROM results;
DROP TABLE results;
ALTER TABLE results_v3 RENAME TO results;
CREATE INDEX results_by_variant ON results (variant_id);
