/*
 * error.h: setting the calling thread's error message (core layer).
 *
 * Library functions report failure by returning a status and leaving a
 * message in mta_last_error(); mta_fail() does both in one statement at the
 * failure site, mta_wrap() adds context on the way up, and every public
 * function ends with mta_done(), which clears the message on success so that
 * mta_last_error() never shows a stale failure after a call that worked.
 */
#ifndef MTA_CORE_ERROR_H
#define MTA_CORE_ERROR_H
#include "runtime/mta.h"

/* Set the message (printf format) and return status. */
int mta_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend "context: " to the current message and return status. */
int mta_wrap(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mta_clear_error(void);
/* The end of a public call: rc unchanged; the message cleared when rc is MTA_OK. */
int mta_done(int rc);
#endif
