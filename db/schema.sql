-- schema.sql: the mtatune tuning database, schema version 4.
--
-- One SQLite file holds what tuning learned: the devices measured, the
-- problems (canonical keys, gen/problem.c), their kernel variants (canonical
-- specs, gen/variant.h) with what compiling them reported, one row per
-- measurement, the winner per (device, problem, T bucket), and compiled
-- binaries keyed by what determines them.
--
-- Identity is by natural keys (UNIQUE constraints), never by rowid alone, so
-- that a resumed run finds its earlier rows and shard databases merge by
-- matching keys (db merge): rowids are local to one file.
--
-- The file is marked as ours by PRAGMA application_id = 0x4d544154 ("MTAT")
-- and by meta('format') = 'mtatune'; PRAGMA user_version is the schema
-- version. db/db_open.c applies this file, inside one transaction, to an
-- empty file only; an older file is brought up to date by the migrations in
-- db/migrate_<N>.sql (N = the version it produces). Changing this file means
-- bumping the version here and in MTA_DB_SCHEMA_VERSION and adding the
-- migration that turns version N-1 into N.
--
-- Times are milliseconds (REAL); timestamps are Unix seconds (REAL, UTC).
-- Empty text, not NULL, stands for "unknown" in identity columns, because
-- UNIQUE treats every NULL as distinct.

PRAGMA application_id = 1297367380;
PRAGMA user_version = 4;

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES
	('format', 'mtatune'),
	('created', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

-- A device as measured: a CPU with its C compiler, or a GPU with its driver
-- and NVRTC. Any change to these is a different device, since each can move
-- the timings.
CREATE TABLE devices (
	id       INTEGER PRIMARY KEY,
	backend  TEXT NOT NULL CHECK (backend IN ('cpu', 'cuda')),
	name     TEXT NOT NULL CHECK (name <> ''),
	arch     TEXT NOT NULL DEFAULT '',    -- sm_90, x86_64-avx2, ...
	driver   TEXT NOT NULL DEFAULT '',
	compiler TEXT NOT NULL DEFAULT '',    -- cc identity (CPU)
	nvrtc    TEXT NOT NULL DEFAULT '',
	cores    INTEGER NOT NULL DEFAULT 0,  -- CPU cores or GPU SMs
	first_seen REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
	UNIQUE (backend, name, arch, driver, compiler, nvrtc, cores)
);

CREATE TABLE problems (
	id   INTEGER PRIMARY KEY,
	key  TEXT NOT NULL UNIQUE CHECK (key <> '')
);

-- A kernel variant of a problem, and what the last compile of its source
-- reported (for compile_target). A changed source_hash means the generator
-- changed the source: the compile information is cleared with it. op is the
-- operation its kernel computes (fwd: the forward, bwd: the backward); a
-- variant is identified by (problem, op, spec) since version 4, so the
-- forward and the backward of one spec are two rows.
CREATE TABLE variants (
	id          INTEGER PRIMARY KEY,
	problem_id  INTEGER NOT NULL REFERENCES problems (id),
	spec        TEXT NOT NULL CHECK (spec <> ''),
	op          TEXT NOT NULL DEFAULT 'fwd' CHECK (op IN ('fwd', 'bwd', 'decode')),
	source_hash TEXT NOT NULL DEFAULT '',
	compile_status TEXT NOT NULL DEFAULT 'unknown'
		CHECK (compile_status IN ('unknown', 'ok', 'failed')),
	compile_target TEXT NOT NULL DEFAULT '',
	registers    INTEGER,                 -- NULL: not reported
	spill_stores INTEGER,
	spill_loads  INTEGER,
	shared_bytes INTEGER,
	stack_bytes  INTEGER,
	compile_ms   REAL,
	compile_log  TEXT,
	UNIQUE (problem_id, op, spec)
);

-- One measurement of a variant on a device at sequence length T, batch B.
-- A later measurement of the same (device, variant, T, B) replaces the row in
-- place, so a resumed or repeated run never duplicates. t_bucket is the
-- smallest power of two >= T, kept for the winner queries. env_error (since
-- version 3): the machine failed, not the kernel (no compiler, a full disk,
-- out of memory); a resumed run measures such a variant again.
CREATE TABLE results (
	id         INTEGER PRIMARY KEY,
	device_id  INTEGER NOT NULL REFERENCES devices (id),
	variant_id INTEGER NOT NULL REFERENCES variants (id),
	T          INTEGER NOT NULL CHECK (T >= 1),
	B          INTEGER NOT NULL CHECK (B >= 1),
	t_bucket   INTEGER NOT NULL CHECK (t_bucket >= T AND t_bucket < 2 * T),
	status     TEXT NOT NULL CHECK (status IN ('ok', 'verify_failed',
		'compile_failed', 'crashed', 'timeout', 'pruned', 'error', 'env_error')),
	median_ms  REAL,                      -- NULL: not measured
	p20_ms     REAL,
	p80_ms     REAL,
	min_ms     REAL,
	runs       INTEGER NOT NULL DEFAULT 0,
	rel_err    REAL,                      -- relative L2 vs the reference
	error      TEXT NOT NULL DEFAULT '',
	run_id     TEXT NOT NULL DEFAULT '',  -- the tuning run that measured it
	started_at REAL,
	recorded_at REAL NOT NULL,
	CHECK (status <> 'ok' OR median_ms IS NOT NULL),
	UNIQUE (device_id, variant_id, T, B)
);
CREATE INDEX results_by_variant ON results (variant_id);

-- The variant that serves an operation of a problem on a device for
-- sequence lengths in (t_bucket/2, t_bucket] and batch sizes in
-- (b_bucket/2, b_bucket], as decided at (T, B), with the evidence: the
-- winner's and the default variant's median times in paired rounds timed
-- side by side, the geometric mean of their per-round ratio (winner/default)
-- with its 95% interval, and whether that interval lies wholly below 1 by
-- the tuner's margin (significant). A winner that is the default itself has
-- ratio 1. rounds 0: decided without paired rounds (older databases).
CREATE TABLE winners (
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
	default_ms REAL,                      -- NULL: not compared
	ratio      REAL,
	ci_low     REAL,
	ci_high    REAL,
	rounds     INTEGER NOT NULL DEFAULT 0,
	significant INTEGER NOT NULL DEFAULT 0,
	updated_at REAL NOT NULL,
	UNIQUE (device_id, problem_id, op, t_bucket, b_bucket)
);

-- Compiled code, keyed by everything that determines it: a source (by hash),
-- the target (sm_90, x86_64, ...), the compiler's identity and its options.
CREATE TABLE binaries (
	id          INTEGER PRIMARY KEY,
	source_hash TEXT NOT NULL CHECK (source_hash <> ''),
	target      TEXT NOT NULL,
	compiler    TEXT NOT NULL,
	options     TEXT NOT NULL DEFAULT '',
	blob        BLOB NOT NULL,
	created_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
	UNIQUE (source_hash, target, compiler, options)
);
