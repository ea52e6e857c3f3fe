#!/bin/sh
# Print one fresh random password per Switchboard NATS user, as NAME=value lines:
#
#   deploy/nats/passwords.sh >> deploy/.env                      # docker compose
#   deploy/nats/passwords.sh > nats-passwords.env                # Kubernetes: then
#   kubectl -n switchboard create secret generic switchboard-nats-passwords \
#       --from-env-file=nats-passwords.env                       # (or a secretGenerator)
#
# Passwords are 32 hex digits, so they need no escaping inside a nats:// URL. Keep the
# file out of version control. Give SB_NATS_INJECTOR_PASSWORD to the systems that
# publish notifications (user "injector"); the others stay inside the deployment.
set -eu
for name in GATEWAY AUTH CHAT NOTIFY SBCTL INJECTOR; do
	printf 'SB_NATS_%s_PASSWORD=%s\n' "$name" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
done
