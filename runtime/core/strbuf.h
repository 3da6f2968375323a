/*
 * strbuf.h: a growing text buffer (core layer), for generated sources, the
 * report and the exporter.
 *
 * It remembers running out of memory instead of failing each call, so a
 * writer appends freely and checks once at the end (mta_buf_take).
 */
#ifndef MTA_CORE_STRBUF_H
#define MTA_CORE_STRBUF_H

#include <stddef.h>

struct mta_buf {
	char *s;       /* NUL-terminated once anything was added */
	size_t len, cap;
	int oom;       /* an append ran out of memory: the text is incomplete */
};

void mta_buf_printf(struct mta_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append n bytes of s. */
void mta_buf_add(struct mta_buf *b, const char *s, size_t n);
/*
 * Hand the text over: MTA_OK with *out (malloc'd, "" when empty) and *len,
 * or MTA_ENOMEM (what naming the text) when an append failed; the buffer is
 * empty afterwards either way.
 */
int mta_buf_take(struct mta_buf *b, const char *what, char **out, size_t *len);
void mta_buf_free(struct mta_buf *b);

/*
 * Untrusted bytes (file names, .npy headers, database strings) shown in a
 * message or a generated comment: s[0..n) with printable ASCII as it is,
 * '\\' doubled, newline, tab and carriage return as \n \t \r and every other
 * byte as \xNN, so that no byte can end a line, a quote or a comment, or
 * drive a terminal. Cut with "..." to fit out[size] (size >= 8). Returns out.
 */
const char *mta_escape(const void *s, size_t n, char *out, size_t size);
/* mta_escape of a NUL-terminated string. */
const char *mta_escape_str(const char *s, char *out, size_t size);
/* 1 when s[0..n) is printable ASCII only (0x20..0x7e): nothing to escape. */
int mta_is_printable(const void *s, size_t n);

#endif
