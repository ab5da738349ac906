# Memory measurement helpers shared by bench-memory.sh and bench-websockets.sh. Sourced
# after $WORK exists and `die` and `log` are defined.

wait_for() { # url
    local i
    for i in $(seq 1 100); do
        curl -sk --max-time 2 -o /dev/null "$1" && return 0
        sleep 0.1
    done
    die "nothing answers at $1"
}
# "rss_kib hwm_kib anon_kib file+shmem_kib threads fds" of a process, or summed over
# a comma-separated list of processes (nginx: master and worker)
pstat() {
    local pid st fds=0 files=()
    for pid in ${1//,/ }; do
        [[ -r /proc/$pid/status ]] || die "process $pid is gone"
        files+=("/proc/$pid/status")
        fds=$((fds + $(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
    done
    st=$(awk '/^VmRSS:/ { r += $2 } /^VmHWM:/ { h += $2 } /^RssAnon:/ { a += $2 } /^RssFile:/ { f += $2 }
              /^RssShmem:/ { s += $2 } /^Threads:/ { t += $2 } END { print r, h, a, f + s, t }' "${files[@]}")
    echo "$st $fds"
}
MEAS="$WORK/measurements.tsv"   # test point rss hwm anon file thr fds note
: >"$MEAS"
measure() { # test point pids [note]
    local s
    s=$(pstat "$3")
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$(tr ' ' '\t' <<<"$s")" "${4:-}" >>"$MEAS"
    # shellcheck disable=SC2086 # $s is six numbers, one per %s
    log "$(printf '%-14s %-36s RSS %7s KiB (peak %s, anon %s, file+shm %s; %s threads, %s fds) %s' "$1" "$2" $s "${4:-}")"
}
NOTES="$WORK/notes.env"
: >"$NOTES"
note() { printf '%s=%s\n' "$1" "$2" >>"$NOTES"; }
