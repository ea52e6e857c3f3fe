#!/bin/bash
# sb-healthcheck: the container HEALTHCHECK of every Switchboard image.
#
#   sb-healthcheck [PATH [HOST:PORT]]     exit 0 when GET PATH answers HTTP 200
#
# PATH defaults to /readyz. HOST:PORT defaults to the address the service itself listens
# on: $SB_HTTP_LISTEN (auth-svc, chat-svc, notify-svc), else $SB_LISTEN (gateway); a
# wildcard host (0.0.0.0, empty, [::]) is probed on loopback. So the probe follows the
# service when an operator moves its port, and nothing but bash is needed in the image
# (its /dev/tcp; no curl or wget, which would pull a dozen libraries into every image).
# Plain HTTP only: a gateway that terminates TLS itself is probed by the orchestrator
# (Kubernetes httpGet with scheme HTTPS), not by this script.
set -u
path=${1:-/readyz}
addr=${2:-${SB_HTTP_LISTEN:-${SB_LISTEN:-127.0.0.1:8000}}}
host=${addr%:*}
port=${addr##*:}
host=${host#[}
host=${host%]}
case $host in
  "" | 0.0.0.0 | "*") host=127.0.0.1 ;;
  ::) host=::1 ;;
esac

{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || { echo "sb-healthcheck: cannot connect to $host:$port" >&2; exit 1; }
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sb-healthcheck\r\nConnection: close\r\n\r\n' \
  "$path" "$host" >&3
status=""
IFS=' ' read -r -t 5 _ status _ <&3 || true
exec 3>&-
if [ "$status" = 200 ]; then
  exit 0
fi
echo "sb-healthcheck: GET $path on $host:$port answered '${status:-nothing}'" >&2
exit 1
