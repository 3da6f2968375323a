/* golden.h: reading the golden cases' config.json (tests only). */
#ifndef MT_GOLDEN_H
#define MT_GOLDEN_H

#include <stddef.h>

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

#endif
