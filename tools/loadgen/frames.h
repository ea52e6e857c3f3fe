/*
 * frames: recognising server frames without a JSON parser.
 *
 * The load generator must cost less than the server it measures, so it does not parse
 * what it receives. It finds the type with one memmem for "\"type\":\"": in JSON a bare
 * double quote cannot occur inside a string (it is escaped there), so the first match is
 * the frame's own "type" key; Switchboard writes it first and the relay does too. The
 * message text it sent ("lg RUN ...", see chat.h) is found the same way after
 * "\"message\":\"". Anything unrecognised counts as foreign and is otherwise ignored.
 */
#ifndef LG_FRAMES_H
#define LG_FRAMES_H

#include <stddef.h>
#include <stdint.h>

enum lg_frame_type {
	LG_F_OTHER = 0,
	LG_F_CHAT_MESSAGE,
	LG_F_MESSAGE_SENT,
	LG_F_NOTIFY,
	LG_F_ERROR,
};

/* The "type" of a server frame. */
enum lg_frame_type lg_frame_type(const char *data, size_t len);

/* Find "message":"lg <fields>" in a frame and parse up to `max` unsigned integers
 * after the "lg " marker (the first one in hex, the rest in decimal), separated by
 * single spaces. Returns how many were parsed (0 when there is no marker). */
int lg_frame_marker(const char *data, size_t len, uint64_t *out, int max);

/* Write "lg <hex run> <v[0]> ... <v[n-1]>" (decimal) and then, when pad > 0, a space
 * and `pad` 'x' characters into buf (size bytes, NUL-terminated). Returns the length
 * written, or -1 when it does not fit. */
int lg_frame_format_marker(char *buf, size_t size, uint32_t run, const uint64_t *v, int n,
                           size_t pad);

#endif
