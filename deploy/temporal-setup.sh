#!/bin/sh
# One-shot, in the temporalio/admin-tools image: create Temporal's two PostgreSQL databases
# and bring their schemas to the version this admin-tools release ships.
#
# Idempotent, so it runs on every `docker compose up`: `create` ignores an existing
# database, `setup-schema -v 0.0` leaves a versioned schema alone, and `update-schema`
# applies only the versions not yet applied — which is also how a Temporal upgrade migrates
# (bump the server and admin-tools tags together, then `docker compose up`).
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS (the PostgreSQL host)}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}" # read by temporal-sql-tool itself; kept out of argv
DB_PORT="${DB_PORT:-5432}"
DBNAME="${DBNAME:-temporal}"
VISIBILITY_DBNAME="${VISIBILITY_DBNAME:-temporal_visibility}"
SCHEMA_DIR="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

sql_tool() {
    database="$1"
    shift
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" \
        -u "$POSTGRES_USER" --db "$database" "$@"
}

setup() {
    database="$1"
    versioned="$2"
    echo "temporal-setup: database $database, schema $versioned"
    sql_tool "$database" create
    sql_tool "$database" setup-schema -v 0.0
    sql_tool "$database" update-schema -d "$SCHEMA_DIR/$versioned/versioned"
}

setup "$DBNAME" temporal
setup "$VISIBILITY_DBNAME" visibility
echo "temporal-setup: schemas are up to date"
