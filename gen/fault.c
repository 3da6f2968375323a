/* fault.c: $MTATUNE_TEST_FAULT, for the fault tests only (see fault.h). */
#include "gen/fault.h"

#include <stdlib.h>
#include <string.h>

int mta_test_fault(const char *spec)
{
	static const char *const kinds[] = { "crash", "hang", "wrong", "syntax", "slow", "nomem" };
	const char *e = getenv("MTATUNE_TEST_FAULT");
	if (!e || !*e)
		return 0;
	const char *at = strchr(e, '@');
	size_t kl = at ? (size_t)(at - e) : strlen(e);
	for (int i = 0; i < (int)(sizeof kinds / sizeof kinds[0]); i++)
		if (kl == strlen(kinds[i]) && !strncmp(e, kinds[i], kl))
			return !at || strstr(spec, at + 1) ? i + 1 : 0;
	return 0;
}
