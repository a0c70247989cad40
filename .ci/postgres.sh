#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL server on 127.0.0.1 for the multi-worker tests.
#   .ci/postgres.sh start DIR   -> prints the SQLAlchemy URL of database "bench"
#   .ci/postgres.sh stop DIR
set -euo pipefail
action=$1 dir=$2 port=${BENCH_PG_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] && [ "$action" = start ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q postgresql || (apt-get update -q && apt-get install -y -q postgresql)) >&2
  fi
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$bin" ] || { echo "postgresql is not installed" >&2; exit 1; }
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$action" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; chmod o+x "$(dirname "$dir")"; fi
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U bench >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -o "-h 127.0.0.1 -p $port -k $dir" -w start >&2
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U bench bench
    echo "postgresql://bench@127.0.0.1:$port/bench"
    ;;
  stop)
    [ -d "$dir/data" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    ;;
esac
