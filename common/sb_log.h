/*
 * sb_log: one line per event on stdout, logfmt style:
 *   2026-11-26T01:02:03.456Z level=info svc=gateway event=ready msg="listening" port=8000
 * Thread-safe (each line is written with one write(2)). Tokens and query strings must
 * never be passed in; callers log user ids and token hash prefixes instead.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

enum sb_log_level { SB_LOG_DEBUG = 0, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR };

/* Set the service name and the threshold ("debug", "info", "warn", "error").
 * Returns 0, or -1 for an unknown level name. Call once, before other threads start. */
int sb_log_init(const char *service, const char *level);

/* Log one event. `event` is a short machine-readable name; `fmt` formats extra
 * key=value pairs (may be NULL). Safe from any thread. */
void sb_log_event(enum sb_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SB_DEBUG(ev, ...) sb_log_event(SB_LOG_DEBUG, ev, __VA_ARGS__)
#define SB_INFO(ev, ...)  sb_log_event(SB_LOG_INFO, ev, __VA_ARGS__)
#define SB_WARN(ev, ...)  sb_log_event(SB_LOG_WARN, ev, __VA_ARGS__)
#define SB_ERROR(ev, ...) sb_log_event(SB_LOG_ERROR, ev, __VA_ARGS__)

#endif
