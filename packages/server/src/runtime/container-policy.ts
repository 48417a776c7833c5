/**
 * Container policy every driver applies the same way: which capabilities a sandbox keeps and what
 * runs when the user gave no start command.
 */

/**
 * Capabilities kept in every sandbox (everything else is dropped). Enough for a root user to
 * install packages and manage files the way `apt`, `pip` and `chown` expect:
 * - CHOWN, FOWNER, FSETID, DAC_OVERRIDE: change owners/modes and write files owned by others
 *   (dpkg unpacks files as other users; pip and tar restore ownership and setgid bits).
 * - SETUID, SETGID: switch users (`apt` drops to the `_apt` user, `su`, `runuser`).
 * - KILL: signal processes of other users in the sandbox.
 * - NET_BIND_SERVICE: bind ports below 1024 inside the sandbox's own network namespace.
 * Not kept (Docker keeps them by default): MKNOD, NET_RAW (raw sockets, ARP/ICMP spoofing on the
 * bridge), SYS_CHROOT, AUDIT_WRITE, SETPCAP, SETFCAP.
 */
export const KEPT_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'SETUID', 'SETGID', 'KILL', 'NET_BIND_SERVICE'];

/**
 * The command PID 1's child runs when the user gave none: sleeps until signalled, on any image
 * with a POSIX shell (busybox has no `sleep infinity`).
 */
export const IDLE_COMMAND = 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done';

/** `PATH` of an image made from a bare rootfs tarball, in every driver. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
