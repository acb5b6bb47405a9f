#!/bin/sh
# One-shot, in the temporalio/admin-tools image (or anywhere the `temporal` CLI is installed):
# wait for the cluster, make sure the namespace exists, register notifyflow's search
# attributes on it, wait until the frontend accepts queries on them, and (when
# NOTIFYFLOW_NEXUS_ENDPOINT is set) create the Nexus endpoint Voyager workflows call.
#
# Idempotent: an attribute that already exists with the same type is left alone; one that
# exists with another type fails loudly, since changing a type is never done silently.
#
#   TEMPORAL_ADDRESS               host:port of the frontend (required)
#   TEMPORAL_NAMESPACE             namespace to prepare (required)
#   NOTIFYFLOW_SEARCH_ATTRIBUTES   "Name=Type Name=Type ..." (required; Type: Int, Keyword, ...)
#   TEMPORAL_NAMESPACE_RETENTION   retention when the namespace is created here (default 7d)
#   NOTIFYFLOW_NEXUS_ENDPOINT      Nexus endpoint to create if missing (optional), targeting
#   TEMPORAL_TASK_QUEUE            ... the workers' task queue in TEMPORAL_NAMESPACE
#   SETUP_ATTEMPTS, SETUP_SLEEP    how long to wait for each step (default 90 x 2 s)
set -eu

: "${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS}"
: "${TEMPORAL_NAMESPACE:?set TEMPORAL_NAMESPACE}"
: "${NOTIFYFLOW_SEARCH_ATTRIBUTES:?set NOTIFYFLOW_SEARCH_ATTRIBUTES}"
RETENTION="${TEMPORAL_NAMESPACE_RETENTION:-7d}"
ATTEMPTS="${SETUP_ATTEMPTS:-90}"
SLEEP="${SETUP_SLEEP:-2}"

say() { echo "temporal-search-attributes: $*"; }

# retry DESCRIPTION COMMAND...: run COMMAND until it succeeds or ATTEMPTS run out.
retry() {
    what="$1"
    shift
    n=1
    until "$@"; do
        if [ "$n" -ge "$ATTEMPTS" ]; then
            say "gave up waiting for $what after $n attempts"
            return 1
        fi
        n=$((n + 1))
        sleep "$SLEEP"
    done
}

ns() { temporal "$@" --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE"; }

cluster_serving() {
    temporal operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING
}

ensure_namespace() {
    if ns operator namespace describe >/dev/null 2>&1; then
        return 0
    fi
    temporal operator namespace create --address "$TEMPORAL_ADDRESS" \
        --namespace "$TEMPORAL_NAMESPACE" --retention "$RETENTION" >/dev/null 2>&1 || true
    ns operator namespace describe >/dev/null 2>&1
}

# Build `--name N --type T ...` and a probe query touching every attribute.
set --
probe=""
for pair in $NOTIFYFLOW_SEARCH_ATTRIBUTES; do
    name="${pair%%=*}"
    kind="${pair#*=}"
    if [ -z "$name" ] || [ "$name" = "$pair" ] || [ -z "$kind" ]; then
        say "malformed entry '$pair' in NOTIFYFLOW_SEARCH_ATTRIBUTES (want Name=Type)"
        exit 2
    fi
    set -- "$@" --name "$name" --type "$kind"
    probe="${probe:+$probe OR }$name IS NOT NULL"
done

register() {
    if out=$(ns operator search-attribute create "$@" 2>&1); then
        return 0
    fi
    case "$out" in
        *"different type"*)
            say "$out"
            exit 1
            ;;
    esac
    say "not yet: $out"
    return 1
}

# The frontend caches search attributes; a query naming them succeeds once it sees them,
# so workflows started after this script exits can carry them.
queryable() {
    ns workflow list --limit 1 --query "$probe" >/dev/null 2>&1
}

say "waiting for the cluster at $TEMPORAL_ADDRESS"
retry "cluster health" cluster_serving
say "ensuring namespace $TEMPORAL_NAMESPACE (retention $RETENTION when created)"
retry "namespace $TEMPORAL_NAMESPACE" ensure_namespace
say "registering $NOTIFYFLOW_SEARCH_ATTRIBUTES"
retry "search attribute registration" register "$@"
retry "search attributes to be queryable" queryable
# Endpoints are cluster-wide; one that exists is left as it is (an operator may have pointed it
# elsewhere on purpose).
ensure_endpoint() {
    if temporal operator nexus endpoint get --address "$TEMPORAL_ADDRESS" \
        --name "$NOTIFYFLOW_NEXUS_ENDPOINT" >/dev/null 2>&1; then
        return 0
    fi
    temporal operator nexus endpoint create --address "$TEMPORAL_ADDRESS" \
        --name "$NOTIFYFLOW_NEXUS_ENDPOINT" --target-namespace "$TEMPORAL_NAMESPACE" \
        --target-task-queue "${TEMPORAL_TASK_QUEUE:?set TEMPORAL_TASK_QUEUE}" >/dev/null
}
if [ -n "${NOTIFYFLOW_NEXUS_ENDPOINT:-}" ]; then
    say "ensuring Nexus endpoint $NOTIFYFLOW_NEXUS_ENDPOINT -> $TEMPORAL_NAMESPACE/${TEMPORAL_TASK_QUEUE:-}"
    retry "Nexus endpoint $NOTIFYFLOW_NEXUS_ENDPOINT" ensure_endpoint
fi
say "done"
