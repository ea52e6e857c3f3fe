/*
 * sb_util: small helpers every service needs: clocks, RFC 3339 timestamps,
 * partitions and subject names, and waiting for SIGINT/SIGTERM.
 */
#ifndef SB_UTIL_H
#define SB_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock in milliseconds since the epoch / monotonic milliseconds. */
int64_t sb_now_ms(void);
int64_t sb_mono_ms(void);
int64_t sb_mono_us(void);

/* Format unix milliseconds as RFC 3339 UTC with a trailing Z, second precision
 * ("2026-01-06T10:30:00Z"), into buf (at least 21 bytes). Returns buf. */
char *sb_rfc3339(int64_t ms, char *buf, size_t size);

/* The partition that owns a user's inbox. */
static inline uint32_t sb_partition(uint64_t user_id, uint32_t partitions)
{
	return partitions ? (uint32_t)(user_id % partitions) : 0;
}

/* Parse a decimal unsigned integer in [1, max]; returns 0 or -1. No sign, no spaces. */
int sb_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* Parse a duration like "90", "90s", "30m", "12h", "7d" into seconds; 0 or -1. */
int sb_parse_duration(const char *s, int64_t *seconds);

/* Block SIGINT and SIGTERM in the calling thread (call in main before starting any
 * thread, so they all inherit the mask), then sb_signal_wait() returns the signal. */
void sb_signal_block(void);
int sb_signal_wait(void);

/* Split "host:port" into a host buffer and a port. Returns 0 or -1. */
int sb_parse_listen(const char *listen, char *host, size_t hostsz, int *port);

#endif
