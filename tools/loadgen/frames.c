/*
 * frames: type sniffing and the "lg ..." marker (see frames.h for why no JSON parser).
 */
#include "frames.h"

#include <string.h>

#define TYPE_KEY "\"type\":\""
#define MSG_KEY  "\"message\":\"lg "

static int word_is(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);
	return (size_t)(end - p) > n && !memcmp(p, word, n) && p[n] == '"';
}

enum lg_frame_type lg_frame_type(const char *data, size_t len)
{
	const char *end = data + len;
	const char *p = memmem(data, len, TYPE_KEY, sizeof TYPE_KEY - 1);
	if (!p)
		return LG_F_OTHER;
	p += sizeof TYPE_KEY - 1;
	if (word_is(p, end, "chat_message"))
		return LG_F_CHAT_MESSAGE;
	if (word_is(p, end, "message_sent"))
		return LG_F_MESSAGE_SENT;
	if (word_is(p, end, "notify"))
		return LG_F_NOTIFY;
	if (word_is(p, end, "error"))
		return LG_F_ERROR;
	return LG_F_OTHER;
}

int lg_frame_marker(const char *data, size_t len, uint64_t *out, int max)
{
	const char *end = data + len;
	const char *p = memmem(data, len, MSG_KEY, sizeof MSG_KEY - 1);
	if (!p)
		return 0;
	p += sizeof MSG_KEY - 1;
	int n = 0;
	while (n < max && p < end) {
		uint64_t v = 0;
		const char *start = p;
		for (; p < end; p++) {
			unsigned d;
			if (*p >= '0' && *p <= '9')
				d = (unsigned)(*p - '0');
			else if (n == 0 && *p >= 'a' && *p <= 'f')
				d = (unsigned)(*p - 'a' + 10);
			else
				break;
			v = v * (n == 0 ? 16 : 10) + d;
		}
		if (p == start)
			break;
		out[n++] = v;
		if (p < end && *p == ' ')
			p++;
		else
			break;
	}
	return n;
}

static char *put_u64(char *p, uint64_t v, unsigned base)
{
	char tmp[24];
	int n = 0;
	do {
		unsigned d = (unsigned)(v % base);
		tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

int lg_frame_format_marker(char *buf, size_t size, uint32_t run, const uint64_t *v, int n,
                           size_t pad)
{
	if (n < 0 || size < 3 + 21 * (size_t)(n + 1) + pad + 2)
		return -1;
	char *p = buf;
	memcpy(p, "lg ", 3);
	p += 3;
	p = put_u64(p, run, 16);
	for (int i = 0; i < n; i++) {
		*p++ = ' ';
		p = put_u64(p, v[i], 10);
	}
	if (pad) {
		*p++ = ' ';
		memset(p, 'x', pad);
		p += pad;
	}
	*p = 0;
	return (int)(p - buf);
}
