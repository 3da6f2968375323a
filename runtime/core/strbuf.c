/* strbuf.c: a growing text buffer (see strbuf.h). */
#include "runtime/core/strbuf.h"
#include "runtime/core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and a NUL; 0, or -1 after marking the buffer oom. */
static int room(struct mta_buf *b, size_t n)
{
	if (b->oom)
		return -1;
	if (b->len + n + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	char *s = realloc(b->s, cap);
	if (!s) {
		b->oom = 1;
		return -1;
	}
	b->s = s;
	b->cap = cap;
	return 0;
}

void mta_buf_printf(struct mta_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || room(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void mta_buf_add(struct mta_buf *b, const char *s, size_t n)
{
	if (room(b, n))
		return;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

int mta_buf_take(struct mta_buf *b, const char *what, char **out, size_t *len)
{
	*out = NULL;
	if (len)
		*len = 0;
	if (!b->oom && !b->s)
		room(b, 0);
	if (b->oom) {
		mta_buf_free(b);
		return mta_fail(MTA_ENOMEM, "out of memory writing %s", what);
	}
	b->s[b->len] = 0;
	*out = b->s;
	if (len)
		*len = b->len;
	memset(b, 0, sizeof *b);
	return MTA_OK;
}

void mta_buf_free(struct mta_buf *b)
{
	free(b->s);
	memset(b, 0, sizeof *b);
}

const char *mta_escape(const void *s, size_t n, char *out, size_t size)
{
	const unsigned char *b = s;
	size_t k = 0;
	if (!size)
		return out;
	for (size_t i = 0; i < n; i++) {
		char one[8];
		unsigned c = b[i];
		if (c == '\\')
			snprintf(one, sizeof one, "\\\\");
		else if (c == '\n')
			snprintf(one, sizeof one, "\\n");
		else if (c == '\t')
			snprintf(one, sizeof one, "\\t");
		else if (c == '\r')
			snprintf(one, sizeof one, "\\r");
		else if (c < 0x20 || c > 0x7e)
			snprintf(one, sizeof one, "\\x%02x", c);
		else
			snprintf(one, sizeof one, "%c", (char)c);
		size_t l = strlen(one);
		/* keep room for "..." and the NUL while more bytes follow */
		if (k + l + (i + 1 < n ? 4 : 1) > size) {
			if (size >= 4) {
				while (k + 4 > size)
					k--;
				memcpy(out + k, "...", 3);
				k += 3;
			}
			break;
		}
		memcpy(out + k, one, l);
		k += l;
	}
	out[k < size ? k : size - 1] = 0;
	return out;
}

const char *mta_escape_str(const char *s, char *out, size_t size)
{
	return mta_escape(s ? s : "", s ? strlen(s) : 0, out, size);
}

int mta_is_printable(const void *s, size_t n)
{
	const unsigned char *b = s;
	for (size_t i = 0; i < n; i++)
		if (b[i] < 0x20 || b[i] > 0x7e)
			return 0;
	return 1;
}
