#!/usr/bin/env bash
# Installs the benchmark's peers from Debian when missing (root + apt-get only; otherwise it
# says what is missing and the bench skips those contenders). Never starts system services.
set -uo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
missing=()
have socat || missing+=(socat)
have stunnel4 || have stunnel || missing+=(stunnel4)
have haproxy || missing+=(haproxy)
have sshd || missing+=(openssh-server)
have ssh || missing+=(openssh-client)
have openssl || missing+=(openssl)
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
  echo "bench: missing ${missing[*]} (not root or no apt-get): those contenders are skipped" >&2
  exit 0
fi
echo "bench: installing ${missing[*]} from Debian" >&2
policy=/usr/sbin/policy-rc.d own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
rc=0
apt-get install -y -q --no-install-recommends ${missing[*]} >&2 ||
  { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends ${missing[*]} >&2; } || rc=$?
[ "$own_policy" = 1 ] && rm -f "$policy"
[ "$rc" -ne 0 ] && echo "bench: apt-get failed (exit $rc); missing contenders are skipped" >&2
exit 0
