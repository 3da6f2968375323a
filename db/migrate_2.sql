-- migrate_2.sql: schema version 1 -> 2 (see schema.sql).
--
-- Variants name the operation they compute (all earlier ones: the forward).
-- Winners are kept per (device, problem, operation, T bucket, B bucket) and
-- carry the evidence of the decision (paired rounds against the default);
-- SQLite cannot change a UNIQUE constraint in place, so the table is built
-- anew. Earlier winners become the forward's, in the bucket of the batch
-- size they were measured at, with no rounds behind them.

ALTER TABLE variants ADD COLUMN op TEXT NOT NULL DEFAULT 'fwd'
	CHECK (op IN ('fwd', 'bwd', 'decode'));

CREATE TABLE winners_2 (
	id         INTEGER PRIMARY KEY,
	device_id  INTEGER NOT NULL REFERENCES devices (id),
	problem_id INTEGER NOT NULL REFERENCES problems (id),
	op         TEXT NOT NULL DEFAULT 'fwd' CHECK (op IN ('fwd', 'bwd', 'decode')),
	t_bucket   INTEGER NOT NULL CHECK (t_bucket >= 1 AND (t_bucket & (t_bucket - 1)) = 0),
	b_bucket   INTEGER NOT NULL DEFAULT 1 CHECK (b_bucket >= 1 AND (b_bucket & (b_bucket - 1)) = 0),
	variant_id INTEGER NOT NULL REFERENCES variants (id),
	time_ms    REAL NOT NULL,
	T          INTEGER NOT NULL DEFAULT 0,
	B          INTEGER NOT NULL DEFAULT 0,
	default_ms REAL,
	ratio      REAL,
	ci_low     REAL,
	ci_high    REAL,
	rounds     INTEGER NOT NULL DEFAULT 0,
	significant INTEGER NOT NULL DEFAULT 0,
	updated_at REAL NOT NULL,
	UNIQUE (device_id, problem_id, op, t_bucket, b_bucket)
);

-- The smallest power of two >= B (B < 1 counts as 1), as runtime/core/pick.c computes it.
INSERT INTO winners_2 (id, device_id, problem_id, op, t_bucket, b_bucket, variant_id, time_ms,
	T, B, updated_at)
SELECT id, device_id, problem_id, 'fwd', t_bucket,
	(WITH RECURSIVE p(x) AS (SELECT 1 UNION ALL SELECT x * 2 FROM p WHERE x < max(B, 1))
	 SELECT max(x) FROM p),
	variant_id, time_ms, T, B, updated_at
FROM winners;

DROP TABLE winners;
ALTER TABLE winners_2 RENAME TO winners;
