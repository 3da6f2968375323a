/* fixtures.h: test inputs shared by the npy, inputs and CLI tests; SQL on a test database. */
#ifndef MT_FIXTURES_H
#define MT_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

/*
 * The case folder names under mt_golden_dir(), sorted, NULL-terminated
 * (malloc'd; free with mt_golden_free). NULL if the folder cannot be read.
 */
char **mt_golden_cases(void);
void mt_golden_free(char **cases);

/*
 * From dir/config.json: pad_key into pad[n] ("both" if absent), and
 * *layer_id (-1 unless layer_norm_rescale is true). 0 on success.
 * A field grep, not a JSON parser: enough for the files in ../shared/golden.
 */
int mt_golden_config(const char *dir, char *pad, size_t n, int *layer_id);

struct mta_inputs;
struct mta_npy;
/*
 * Golden case name (a folder under mt_golden_dir()): its inputs loaded with
 * the pad and layer id of its config.json into *in, and expected.npy as
 * float64 into *e. MTA_OK, or a status with the library's message (then
 * nothing is left to free). On success free both (mta_inputs_free, mta_npy_free).
 */
int mt_golden_load(const char *name, struct mta_inputs *in, struct mta_npy *e);

/* Write dir/name.npy: random float32 (mt_uniform) of the given int64_t sizes. */
void mt_put_npy(const char *dir, const char *name, int ndim, ...);

/*
 * Write path: a .npy of n integers x with descr '<i4' or '<i8' (other
 * descrs write 8-byte values under that header, for refusals) and the
 * shape given as text, e.g. "(4,)": cu_seqlens files.
 */
void mt_put_ints(const char *path, const char *descr, const char *shape, const int64_t *x,
		 int n);

/*
 * A fresh folder mt_tmpdir()/sub holding q [1,5,4,8], k and v [1,5,2,8]
 * (random float32); returns its path (static buffer, valid until the next call).
 */
const char *mt_small_case(const char *sub);

/*
 * The rows of an SQL query on the database file db (opened read-only), one
 * line per row, columns joined by '|', NULL as ""; malloc'd, "" on failure.
 * Tests compare what they see with what the database holds through it.
 */
char *mt_sql_rows(const char *db, const char *sql);

/*
 * A database db holding one CUDA device (an H100, sm_90, no GPU needed) whose
 * winner for problem key at T=1024 is the default CUDA variant, measured by
 * nobody: what `mtatune export --arch sm_90` needs to compile a cubin.
 */
void mt_cuda_winner_db(const char *db, const char *key);

/* The first column of the first row of sql on database db (read-only); -1 on failure. */
long long mt_db_count(const char *db, const char *sql);

#include <sys/types.h>

/*
 * Start argv (execvp) with its stdout and stderr into a pipe; *fd reads it.
 * The pid, or -1. The caller closes *fd and reaps the child.
 */
pid_t mt_spawn_pipe(char *const argv[], int *fd);
/*
 * Read fd until `lines` newlines have come, or end of file; the number seen.
 * *gap: seconds between the last two newlines (0 with fewer than two). A
 * program that has printed fewer lines than it will is still running, which is
 * how the SIGKILL tests land their kills mid-run.
 */
int mt_read_lines(int fd, int lines, double *gap);

#endif
