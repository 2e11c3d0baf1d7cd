#!/bin/sh
# FerretDB (SQLite backend) behind the official mongo image's contract, so a
# MultiVac can point `mongodb.managed.image` at it unchanged: the root user
# comes from MONGO_INITDB_ROOT_USERNAME / MONGO_INITDB_ROOT_PASSWORD (created
# in the `admin` database on first start, SCRAM authentication on), the data
# lives in /data/db, the server listens on 27017.
set -eu
if [ -z "${MONGO_INITDB_ROOT_USERNAME:-}" ] || [ -z "${MONGO_INITDB_ROOT_PASSWORD:-}" ]; then
  echo "docker-entrypoint.sh: set MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD: this server never runs without authentication" >&2
  exit 64
fi
export FERRETDB_SETUP_USERNAME="$MONGO_INITDB_ROOT_USERNAME"
export FERRETDB_SETUP_PASSWORD="$MONGO_INITDB_ROOT_PASSWORD"
unset MONGO_INITDB_ROOT_USERNAME MONGO_INITDB_ROOT_PASSWORD
exec /usr/local/bin/ferretdb \
  --handler=sqlite --sqlite-url=file:/data/db/ --state-dir=/data/db \
  --listen-addr=:27017 --debug-addr=127.0.0.1:8088 \
  --telemetry=disable --test-enable-new-auth --setup-database=admin \
  "$@"
