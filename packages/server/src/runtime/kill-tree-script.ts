/**
 * Shell script a driver runs in a second exec (as the same user) to signal an exec's process tree:
 * every process whose environment carries the marker, and the process group each of them leads
 * (runc makes every exec a session and group leader, so the group holds everything it started that
 * did not leave it). It repeats to catch processes forked while it ran.
 * Arguments: $1 signal name, $2 marker (`CORRAL_EXEC_ID=<id>`), $3 rounds at most (default 3),
 * $4 `1` to wait (0.1 s a round) for a first such process when there is none yet — for drivers
 * whose exec API starts the process asynchronously — instead of ending at once.
 */
export const KILL_TREE_SCRIPT = `
sig="$1"; marker="$2"; rounds="\${3:-3}"; wait_first="\${4:-0}"; seen=0; round=0
while [ "$round" -lt "$rounds" ]; do
  round=$((round + 1))
  found=""
  for d in /proc/[0-9]*; do
    p="\${d#/proc/}"
    [ "$p" = "$$" ] && continue
    [ "$p" = 1 ] && continue
    # One variable per line: busybox grep stops reading a line at the first NUL.
    if tr '\\0' '\\n' < "$d/environ" 2>/dev/null | grep -qxF -e "$marker"; then found="$found $p"; fi
  done
  if [ -z "$found" ]; then
    if [ "$seen" = 1 ] || [ "$wait_first" = 0 ]; then exit 0; fi
    sleep 0.1 2>/dev/null || sleep 1
    continue
  fi
  seen=1
  # Groups first, in one go each, so a shell does not see its children die before its own signal.
  # dash needs "--" before a negative pid, busybox ash refuses it: try both.
  for p in $found; do kill -s "$sig" -- "-$p" 2>/dev/null || kill -s "$sig" "-$p" 2>/dev/null || true; done
  for p in $found; do kill -s "$sig" "$p" 2>/dev/null || true; done
  [ "$sig" = KILL ] || exit 0
done
exit 0
`;
