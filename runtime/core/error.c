/*
 * error.c: per-thread error messages and status names.
 *
 * Library functions report failure by returning a status and leaving a
 * message here (contract in error.h).
 */
#include "runtime/core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char msg[2048];

const char *mta_last_error(void) { return msg; }

int mta_fail(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return status;
}

void mta_clear_error(void) { msg[0] = 0; }

int mta_done(int rc)
{
	if (rc == MTA_OK)
		msg[0] = 0;
	return rc;
}

/* Prefix the current message with context, e.g. a file name. */
int mta_wrap(int status, const char *fmt, ...)
{
	char prefix[1024], old[sizeof msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, msg, sizeof old);
	size_t n = strlen(prefix);
	if (n > sizeof msg - 3)
		n = sizeof msg - 3;
	memcpy(msg, prefix, n);
	memcpy(msg + n, ": ", 2);
	size_t rest = sizeof msg - n - 3;
	size_t m = strnlen(old, rest);
	memcpy(msg + n + 2, old, m);
	msg[n + 2 + m] = 0;
	return status;
}

const char *mta_status_name(int status)
{
	static const char *names[] = {
		"OK", "EINVAL", "ENOMEM", "EIO", "EFORMAT", "ESHAPE", "ECOMPILE",
		"EDB", "ENODEV", "ENOTFOUND", "EUNSUPPORTED", "EKERNEL", "EVERIFY", "EINTR",
	};
	if (status < 0 || status >= (int)(sizeof names / sizeof names[0]))
		return "EUNKNOWN";
	return names[status];
}
