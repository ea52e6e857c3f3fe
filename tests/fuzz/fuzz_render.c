/* Fuzz target: the frames the gateway writes (gateway/render.c) around texts it did not
 * choose: a user's message, name and attachment, a notification's title. Any bytes must
 * give a frame jansson reads back as JSON; bytes jansson takes as a string must render
 * exactly as jansson's own json_dumps(JSON_COMPACT) of that string. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0'; /* a protobuf string ends at its first NUL here, as in the gateway */
	Sb__ChatMessage m = SB__CHAT_MESSAGE__INIT;
	m.id = 1;
	m.sender_id = 2;
	m.sender_name = text;
	m.message = text;
	m.timestamp_ms = 1767695400000;
	struct gw_buf *b = gw_render_chat_message(&m);
	if (!b)
		__builtin_trap();
	json_t *o = json_loadb((const char *)b->data + LWS_PRE, b->len, 0, NULL);
	if (!o)
		__builtin_trap(); /* not JSON */
	json_t *ref = json_string(text);
	if (ref) {
		/* valid UTF-8: the message must come back unchanged */
		if (strcmp(json_string_value(json_object_get(o, "message")), text) != 0)
			__builtin_trap();
		char *want = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
		const char *got = strstr((const char *)b->data + LWS_PRE, ",\"message\":");
		if (!want || !got || strncmp(got + 11, want, strlen(want)) != 0)
			__builtin_trap();
		free(want);
		json_decref(ref);
	}
	json_decref(o);
	gw_buf_unref(b);
	free(text);
	return 0;
}
