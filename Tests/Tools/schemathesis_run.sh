#!/usr/bin/env bash
# Fuzzes a running `airlock serve` against docs/openapi.yaml with schemathesis.
#   AIRLOCK_URL=http://127.0.0.1:PORT AIRLOCK_TOKEN=alk_... Tests/Tools/schemathesis_run.sh [more schemathesis flags]
# AIRLOCK_TOKEN must be an admin token. Exits non-zero when schemathesis finds a failure.
# POST /v1/sandboxes and POST /v1/tokens are fuzzed too and create real objects: use a throwaway daemon.
set -euo pipefail
: "${AIRLOCK_URL:?set AIRLOCK_URL, e.g. http://127.0.0.1:8080}"
: "${AIRLOCK_TOKEN:?set AIRLOCK_TOKEN to an admin token}"
spec="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/docs/openapi.yaml"
command -v schemathesis >/dev/null || python3 -m pip install --quiet 'schemathesis==4.32.5'
schemathesis --version

hooks="$(mktemp --suffix=.py)"
config="$(mktemp --suffix=.toml)"
trap 'rm -f "$hooks" "$config"' EXIT
# schemathesis has no serializer for application/x-tar (PUT .../archive): send its bytes as-is.
echo 'import schemathesis; schemathesis.serializer.alias("application/x-tar", "application/octet-stream")' >"$hooks"
# No crash cache (.schemathesis/ in the working directory, replayed by the next run): every run
# is the same run for its seed, and nothing is left in the repository.
printf '[cache]\nenabled = false\n' >"$config"

# Checks: a 5xx, an undocumented status, content type or response body is a failure; in the
# stateful phase (which follows the spec's `links`: create a sandbox, then exec/files/contain it;
# contain, then the snapshot) also a resource that was just created and is not there.
# Not run: use_after_free (DELETE /v1/sandboxes/{id} stops a sandbox, whose record stays readable
# as `stopped`: by design, not a leak); positive_data_acceptance (a schema-valid request on an id
# that does not exist is rightly 404, on a stopped sandbox 409, a limit above the profile's 403);
# object_level_authorization (needs a second principal and its objects); unsupported_method,
# allow_header_conformance (405 is not part of the contract); negative_data_rejection,
# ignored_auth, missing_required_header, response_headers_conformance (not in scope here).
# Not called at all: PUT /v1/policy (would replace the daemon's policy), DELETE /v1/tokens/{id}
# (could revoke AIRLOCK_TOKEN itself), POST /v1/kill (`all: true` stops every sandbox).
# About 45 s on 2 cores; the run leaves sandboxes (running ones stop at their TTL) and tokens.
args=(run "$spec" --url "$AIRLOCK_URL"
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ensure_resource_availability
  --phases examples,coverage,fuzzing,stateful --max-examples 30 --seed 20261124 --generation-database none
  --exclude-operation-id replacePolicy --exclude-operation-id revokeToken --exclude-operation-id kill
  --no-color)
echo "schemathesis ${args[*]} --header 'Authorization: Bearer ***' $*"
SCHEMATHESIS_HOOKS="$hooks" schemathesis --config-file "$config" "${args[@]}" --header "Authorization: Bearer $AIRLOCK_TOKEN" "$@"
