# Sourced by the benchmark scripts. `start_workdir NAME` makes a temp work dir ($WORK)
# and an empty list of started processes ($PIDS: append every background pid). On exit
# every listed process is stopped (TERM, then KILL) and the dir removed — kept when the
# run failed or with KEEP_TMP=1. Needs a log() function.

start_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    PIDS=()
    trap _workdir_cleanup EXIT
    trap 'exit 130' INT TERM
}

_workdir_cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ "${KEEP_TMP:-0}" == 1 || $rc != 0 ]]; then
        log "temp dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
