/*
 * ifaddrs: the load generator's getifaddrs(), answered from one copy per process.
 *
 * libwebsockets 4.1's client resolves the source address it binds to (`iface`, which
 * the load generator sets to spread sockets over 127.0.0.x) with getifaddrs() on every
 * connect: a netlink dump of every interface. Measured with perf during the idle
 * scenario, that was 22 % of the load generator's CPU, the load generator 39 % of the
 * machine, and connects/s is a figure of the servers, not of the tool. The interfaces
 * do not change during a run, so this definition (exported from the executable, so
 * that it wins over libc's for lws too; see tools/CMakeLists.txt) asks libc once per
 * process and hands out that list; freeifaddrs() of it does nothing. Workers are
 * single-threaded processes forked before their first connect.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <ifaddrs.h>
#include <stddef.h>

static struct ifaddrs *cached;

int getifaddrs(struct ifaddrs **out)
{
	if (!cached) {
		int (*real)(struct ifaddrs **) =
		    (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
		if (!real || real(&cached) < 0) {
			cached = NULL;
			return -1;
		}
	}
	*out = cached;
	return 0;
}

void freeifaddrs(struct ifaddrs *ifa)
{
	if (ifa == cached)
		return;
	void (*real)(struct ifaddrs *) =
	    (void (*)(struct ifaddrs *))dlsym(RTLD_NEXT, "freeifaddrs");
	if (real)
		real(ifa);
}
