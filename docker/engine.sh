#!/usr/bin/env bash
# The container engine for `make test`: `start` makes one answer if it can, `stop` stops only a
# dockerd that `start` started (its pid is in .cache/dockerd.pid), `reason` says in one line what
# is missing (nothing when the docker backend can run).
#   start: as root on Debian/Ubuntu installs docker.io, docker-compose and debootstrap if missing,
#          then starts `dockerd --bridge=none --iptables=false` if no engine answers: no bridge,
#          no firewall rules; containers use host networking and Triton binds to 127.0.0.1.
#          Elsewhere it prints one line saying what is missing; the container tests then skip.
set -uo pipefail
cd "$(dirname "$0")/.."
pidfile=.cache/dockerd.pid
log=.cache/dockerd.log

answers() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

case "${1:-}" in
start)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
      echo "axon: installing ${missing[*]} (apt-get) for the container tests"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || echo "axon: apt-get install ${missing[*]} failed; the container tests will skip"
    fi
  fi
  answers && exit 0
  if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
    if ! command -v docker >/dev/null; then
      echo "axon: no container engine (docker is not installed; as root on Debian: apt-get install docker.io docker-compose debootstrap); the container tests skip"
    else
      echo "axon: no Docker engine answers and this user can't start one (as root: dockerd --bridge=none --iptables=false); the container tests skip"
    fi
    exit 0
  fi
  mkdir -p .cache
  setsid dockerd --bridge=none --iptables=false >"$log" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 100); do  # up to ~30 s, checking that dockerd is still alive
    answers && { echo "axon: started dockerd (pid $(cat "$pidfile"); log $log); make test stops it at the end"; exit 0; }
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.3
  done
  echo "axon: dockerd did not come up (see $log); the container tests skip"
  rm -f "$pidfile"
  exit 0
  ;;
stop)
  [ -f "$pidfile" ] || exit 0
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  kill -TERM "$pid" 2>/dev/null || exit 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { echo "axon: stopped the dockerd make test started (pid $pid)"; exit 0; }; sleep 0.2; done
  echo "axon: dockerd (pid $pid) did not stop in 20 s"
  ;;
reason)
  PY=${PY:-.venv/bin/python}
  "$PY" -c 'from axon.serving.docker import docker_unavailable_reason as r; print(r("cpu") or "")'
  ;;
*)
  echo "usage: docker/engine.sh start|stop|reason" >&2
  exit 2
  ;;
esac
