/*
 * notify: `sbctl notify`, the operator's way to inject a notification.
 *
 * Design: sbctl goes through the same public interface as every other system
 * (notify.send.json, captured by the NOTIFY JetStream stream), not a private admin
 * subject, so what an operator tries is exactly what integrators get.
 */
#ifndef SBCTL_NOTIFY_H
#define SBCTL_NOTIFY_H

#include "sbctl.h"

/* `sbctl notify --user ID | --users ID,ID,... | --all [--title T] [--message M]
 * [--type TYPE]`. argv[0] is the command word ("notify"), as for every row of
 * sbctl's command table. Returns an exit status: 0 stored (or durably queued when
 * notify-svc did not answer in time), 1 refused or failed (reason on stderr),
 * 2 usage. Connects when needed; single-threaded. */
int sbctl_notify(struct sbctl *c, int argc, char **argv);

#endif
