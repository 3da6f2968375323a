/* error.h: internal helpers for setting the thread's error message. */
#ifndef MTA_ERROR_H
#define MTA_ERROR_H
#include "mta.h"

/* Set the message (printf format) and return status. */
int mta_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend "context: " to the current message and return status. */
int mta_wrap(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mta_clear_error(void);
#endif
