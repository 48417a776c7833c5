/*
 * corral-agent: the two native pieces of Corral's `oci` runtime driver, in one static binary.
 *
 *   corral-agent shim [--netns=<path>] [--restore=<CRIU image> --criu=<criu> --work=<dir> [--empty-netns]]
 *                     <runtime> <state root> <bundle> <pid file> <container id> <log file>
 *                     <oom file> <exit file> <socket path> [<seccomp BPF file>]
 *     Runs on the host as the parent of one sandbox (like containerd's shim). Makes itself a child
 *     subreaper, sends its stdio to the log file, makes a listening socket on <socket path> (inside
 *     the network namespace at --netns, where CRIU can find it), runs
 *     `<runtime> run --detach --preserve-fds 1` so the listening socket becomes fd 3 of the
 *     sandbox's init (and the BPF file, when given, fd 4, with --preserve-fds 2) and a pipe its
 *     stdout and stderr, renames the pid file into place once the sandbox runs, then copies the
 *     pipe into the log until the init exits. When it does, writes `<exit status> <oom_kill count>`
 *     to the exit file (the count is the `oom_kill N` line of <oom file>: memory.oom_control on
 *     cgroup v1, memory.events on v2). With --restore it runs `<runtime> restore` of the CRIU image
 *     instead (memory checkpoints; --empty-netns: CRIU makes a new network namespace), passing the
 *     socket as the runtime's stdin for the CRIU configuration's `inherit-fd` (the output pipe
 *     takes the dumped one's place through runc's descriptors.json), then hands the restored agent
 *     a socket made inside its new network namespace (F_LISTENER).
 *
 *   corral-agent init [--seccomp-fd=N] [--listen=<socket path>] -- <command...>
 *     PID 1 inside the sandbox. With --seccomp-fd, first loads the seccomp filter compiled by
 *     corral-seccomp from descriptor N (and refuses to start when it cannot). Runs <command> (the start command) and exits with its status,
 *     forwards termination signals to it, reaps every orphan, and serves exec sessions: each
 *     connection accepted on fd 3 carries one process (see agent-protocol.ts for the frames).
 *     Sessions inherit the sandbox's namespaces, cgroup, capabilities, seccomp filter and
 *     no_new_privs from this process. The agent makes itself non-dumpable, so processes in the
 *     sandbox cannot reach its descriptors through /proc/1/fd. It resolves an exec's user from the
 *     sandbox's /etc/passwd and /etc/group itself (small regular files only, never blocking), and
 *     kills an exec's setsid'd children through pidfds (see signal_marked).
 *     With --listen it binds its own socket instead of using fd 3: the server runs one such agent
 *     on the host (command `cat`, reading a pipe from the server, so it ends with the server) to
 *     start host tools, because forking this small process costs far less than forking Node.
 *
 *   corral-agent init --listen-tcp=[<IPv4 address>:]<port> --secret-env=<NAME> [...] -- <command...>
 *     The same PID 1 for the kubernetes driver, which reaches it over the Pod's IP: it accepts TCP
 *     connections (on every address, or the one given) instead of fd 3, and authenticates each one
 *     before it honours any frame. The secret (at least 16 bytes) comes from the environment
 *     variable <NAME>, which the agent wipes from its own memory and removes from its environment
 *     before it starts anything, so no process it starts inherits it; being non-dumpable, its
 *     /proc/1/environ is closed to the sandbox's processes as well. Each connection first gets an `N`
 *     frame with 32 random bytes; the first frame back must be `A` with
 *     HMAC-SHA256(secret, "corral-agent-auth-v1" || nonce), compared in constant time, within 5 s.
 *     Anything else closes the connection without running anything; a fresh nonce per connection
 *     means a recorded handshake cannot be replayed. At most 64 connections wait for their
 *     handshake at once (a newer one displaces the oldest). The frames are not encrypted.
 *     With FLAG_INHERIT_ENV in an exec frame, the process gets the agent's own environment (the
 *     container's) overlaid with the frame's.
 *
 *   corral-agent exec [--user=<user>] [--cwd=<dir>] [--env=K=V]... [--framed-stdin] [--wait-tty-size] [--argv-file=<path>] -- <command...>
 *     One process inside a sandbox, for drivers that start processes through an exec API that
 *     cannot switch users or close stdin (the kubernetes driver's exec over the API server). Resolves
 *     <user> as `init` does (small regular /etc/passwd and /etc/group only), sets the environment
 *     (HOME from the user's entry unless --env gives one), enters <dir> and execs <command>. With --argv-file
 *     the command is read from that file instead (NUL-separated), which is then deleted. With
 *     --framed-stdin, fd 0 carries frames (4-byte big-endian length, then bytes; length 0 = EOF):
 *     a forked relay writes their bytes to a pipe that becomes the command's stdin and closes it at
 *     the EOF frame, so the caller can send EOF without closing the connection. --wait-tty-size
 *     waits (up to 1 s) until the PTY on fd 0 has a size. CORRAL_AGENT_SECRET (the variable the
 *     kubernetes driver passes the TCP agent's secret in) is removed from the command's environment.
 *
 *   corral-agent netdown
 *     Deletes every network interface of its network namespace but loopback: the kubernetes
 *     driver's init container (the only one with CAP_NET_ADMIN) gives a Pod without network access
 *     nothing but loopback this way.
 *
 *   corral-agent netns <host uid> <host gid> <size> <user namespace file> <network namespace file>
 *     Makes a user namespace with the mapping 0 -> <host uid/gid> (size ids) and a network namespace
 *     it owns, and keeps both by bind-mounting their nsfs files onto the two files (created empty).
 *
 *   corral-agent idmap-mount <host uid> <host gid> <size> <scratch> <target> <upper> <work> <layer>...
 *     Mounts overlayfs at <target> with every <layer> (bottom first) cloned, made read-only and
 *     id-mapped through a user namespace with the mapping, then detaches the layer mounts again
 *     (overlayfs keeps its own clones) and removes <scratch>, where they were attached meanwhile.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Frame types, host -> agent. */
#define F_EXEC 'E'
/* Like F_EXEC, with a user spec string after the environment that the agent resolves itself. */
#define F_EXEC_AS_USER 'U'
#define F_STDIN 'I'
#define F_STDIN_CLOSE 'C'
#define F_SIGNAL 'S'
#define F_RESIZE 'R'
/* Unix listeners only: the frame carries (SCM_RIGHTS) a listening socket that replaces the agent's
 * own; answered with an exit frame (0: replaced). The shim of a memory restore sends it. */
#define F_LISTENER 'L'
/* Frame types, agent -> host. */
#define F_PID 'P'
#define F_STDOUT '1'
#define F_STDERR '2'
#define F_EXIT 'X'
/* TCP listeners only: the agent's challenge (32 random bytes) and the host's answer (the HMAC). */
#define F_NONCE 'N'
#define F_AUTH 'A'
#define NONCE_LEN 32
#define AUTH_MS 5000
#define MAX_UNAUTHED 64
#define AUTH_CONTEXT "corral-agent-auth-v1"
/* The variable the kubernetes driver passes the secret in; `exec` removes it from its command's environment. */
#define SECRET_ENV "CORRAL_AGENT_SECRET"

#define HEADER 5
#define MAX_FRAME (64u << 20)
#define MAX_SESSIONS 4096
#define READ_CHUNK 65536
#define OUT_HIGH_WATER (256u << 10)
#define DRAIN_MS 200
/* How long a finished session waits for the host to close its side before closing anyway. */
#define LINGER_MS 5000
#define FLAG_TTY 1u
#define FLAG_STDIN 2u
#define FLAG_BACKGROUND 4u
#define FLAG_INHERIT_ENV 8u
/* Largest /etc/passwd or /etc/group the agent reads. */
#define MAX_ACCOUNT_FILE (4u << 20)
#define MAX_GROUPS 256
/* The variable marking every process of an exec (oci-exec.ts EXEC_MARKER_ENV). */
#define MARKER_NAME "CORRAL_EXEC_ID="

struct buffer {
  unsigned char *data;
  size_t len, off, cap;
};

struct session {
  int conn;
  pid_t pid;
  int out, err, in, tty;
  int exited, code, exit_sent, stdin_close_pending;
  /* After the exit frame: our side is shut down, and we wait (until `deadline`) for the host to close. */
  int shut;
  long long deadline;
  struct buffer rbuf, ibuf, wbuf;
  /* The exec's user, and `CORRAL_EXEC_ID=<id>` from its environment (empty when absent), for kills. */
  uint32_t uid, gid;
  char marker[96];
  /* A TCP connection is unauthenticated until its `A` frame matched; `deadline` bounds the wait. */
  int authed, doomed;
  long long accepted;
  unsigned char nonce[NONCE_LEN];
  /* A descriptor the host passed with its last frame (SCM_RIGHTS), until a frame uses it. */
  int passed_fd;
};

static struct session *sessions[MAX_SESSIONS];
/* The agent's listening socket, and whether it is a Unix one (only those take F_LISTENER). */
static int agent_listener = -1;
static int listener_is_unix;
static int session_count;
static pid_t main_pid;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

static int reserve(struct buffer *b, size_t extra) {
  if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
  if (b->len + extra <= b->cap) return 0;
  if (b->off > 0) {
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->len + extra <= b->cap) return 0;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra) cap *= 2;
  unsigned char *data = realloc(b->data, cap);
  if (!data) return -1;
  b->data = data;
  b->cap = cap;
  return 0;
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static uint32_t get_u32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int queue_frame(struct session *s, char type, const void *payload, size_t len) {
  if (reserve(&s->wbuf, HEADER + len) < 0) return -1;
  unsigned char *p = s->wbuf.data + s->wbuf.len;
  p[0] = (unsigned char)type;
  put_u32(p + 1, (uint32_t)len);
  if (len) memcpy(p + HEADER, payload, len);
  s->wbuf.len += HEADER + len;
  return 0;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void free_session(int index) {
  struct session *s = sessions[index];
  close_fd(&s->conn);
  close_fd(&s->passed_fd);
  if (s->tty >= 0) {
    /* out and in are the tty master too. */
    if (s->out == s->tty) s->out = -1;
    if (s->in == s->tty) s->in = -1;
  }
  close_fd(&s->out);
  close_fd(&s->err);
  close_fd(&s->in);
  close_fd(&s->tty);
  free(s->rbuf.data);
  free(s->ibuf.data);
  free(s->wbuf.data);
  free(s);
  sessions[index] = sessions[--session_count];
}

/* --- authentication of TCP connections: HMAC-SHA256 (FIPS 180-4, RFC 2104) ------------------ */

struct sha256 {
  uint32_t h[8];
  unsigned char block[64];
  size_t used;
  uint64_t bytes;
};

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(struct sha256 *c, const unsigned char *p) {
  uint32_t w[64], a, b, d, e, f, g, h, x;
  for (int i = 0; i < 16; i++) w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) | ((uint32_t)p[4 * i + 2] << 8) | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = c->h[0], b = c->h[1], x = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i];
    uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & x) ^ (b & x));
    h = g, g = f, f = e, e = d + t1, d = x, x = b, b = a, a = t1 + t2;
  }
  c->h[0] += a, c->h[1] += b, c->h[2] += x, c->h[3] += d, c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}

static void sha256_init(struct sha256 *c) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, iv, sizeof iv);
  c->used = 0;
  c->bytes = 0;
}

static void sha256_update(struct sha256 *c, const unsigned char *p, size_t len) {
  c->bytes += len;
  while (len > 0) {
    size_t take = 64 - c->used < len ? 64 - c->used : len;
    memcpy(c->block + c->used, p, take);
    c->used += take;
    p += take;
    len -= take;
    if (c->used == 64) {
      sha256_block(c, c->block);
      c->used = 0;
    }
  }
}

static void sha256_final(struct sha256 *c, unsigned char out[32]) {
  uint64_t bits = c->bytes * 8;
  unsigned char pad = 0x80, zero = 0, len[8];
  sha256_update(c, &pad, 1);
  while (c->used != 56) sha256_update(c, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
  sha256_update(c, len, 8);
  for (int i = 0; i < 8; i++) put_u32(out + 4 * i, c->h[i]);
}

/* HMAC-SHA256 of the two parts `a` and `b` (concatenated) under `key`. */
static void hmac_sha256(const unsigned char *key, size_t keylen, const unsigned char *a, size_t alen, const unsigned char *b, size_t blen,
                        unsigned char out[32]) {
  unsigned char k[64] = {0}, pad[64], inner[32];
  struct sha256 c;
  if (keylen > 64) {
    sha256_init(&c);
    sha256_update(&c, key, keylen);
    sha256_final(&c, k);
  } else {
    memcpy(k, key, keylen);
  }
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
  sha256_init(&c);
  sha256_update(&c, pad, 64);
  sha256_update(&c, a, alen);
  sha256_update(&c, b, blen);
  sha256_final(&c, inner);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
  sha256_init(&c);
  sha256_update(&c, pad, 64);
  sha256_update(&c, inner, 32);
  sha256_final(&c, out);
}

/* The TCP listener's secret (empty: the listener is a Unix socket, whose connections need none). */
static unsigned char agent_secret[256];
static size_t agent_secret_len;

/* Whether `mac` is the HMAC of the session's nonce; compares every byte, whatever differs. */
static int auth_matches(const struct session *s, const unsigned char *mac, uint32_t len) {
  if (len != 32 || agent_secret_len == 0) return 0;
  unsigned char want[32];
  hmac_sha256(agent_secret, agent_secret_len, (const unsigned char *)AUTH_CONTEXT, strlen(AUTH_CONTEXT), s->nonce, NONCE_LEN, want);
  volatile unsigned char diff = 0;
  for (int i = 0; i < 32; i++) diff |= want[i] ^ mac[i];
  return diff == 0;
}

/* --- users: resolved from the sandbox's own /etc/passwd and /etc/group ---------------------- */

struct identity {
  uint32_t uid, gid, ngroups;
  gid_t groups[MAX_GROUPS];
  char home[1024];
};

/*
 * Reads `path` (inside the sandbox: the agent's root is the sandbox's, so symlinks resolve there)
 * into a NUL-terminated buffer. A missing file reads as empty. Anything but a regular file of at
 * most MAX_ACCOUNT_FILE bytes is refused with a reason in `err`: opening with O_NONBLOCK never
 * waits for a FIFO's writer, and the type is checked on the open descriptor.
 */
static char *read_account_file(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return calloc(1, 1);
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "cannot read %s: not a regular file", path);
    close(fd);
    return NULL;
  }
  if (st.st_size > (off_t)MAX_ACCOUNT_FILE) {
    snprintf(err, errlen, "cannot read %s: larger than %u bytes", path, MAX_ACCOUNT_FILE);
    close(fd);
    return NULL;
  }
  size_t cap = (size_t)st.st_size + 1, len = 0;
  char *data = malloc(cap + 1);
  while (data) {
    ssize_t n = read(fd, data + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
      free(data);
      data = NULL;
      break;
    }
    if (n == 0) break;
    len += (size_t)n;
    if (len == cap) {
      /* It grew past its size: allow up to the bound. */
      if (cap > MAX_ACCOUNT_FILE) {
        snprintf(err, errlen, "cannot read %s: larger than %u bytes", path, MAX_ACCOUNT_FILE);
        free(data);
        data = NULL;
        break;
      }
      size_t more = cap * 2 > MAX_ACCOUNT_FILE + 1 ? MAX_ACCOUNT_FILE + 1 : cap * 2;
      char *grown = realloc(data, more + 1);
      if (!grown) {
        free(data);
        data = NULL;
        break;
      }
      data = grown;
      cap = more;
    }
  }
  if (!data && !err[0]) snprintf(err, errlen, "cannot read %s: out of memory", path);
  close(fd);
  if (data) data[len] = 0;
  return data;
}

/* Splits one line of a colon file into at most `max` fields (in place). Returns the field count. */
static int split_fields(char *line, char **fields, int max) {
  int n = 0;
  fields[n++] = line;
  for (char *p = line; *p && n < max; p++) {
    if (*p == ':') {
      *p = 0;
      fields[n++] = p + 1;
    }
  }
  return n;
}

/* A decimal id (what runc accepts: digits only, fits 32 bits). */
static int parse_id(const char *s, uint32_t *out) {
  if (!*s) return -1;
  unsigned long long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (unsigned)(*p - '0');
    if (v > 0xffffffffull) return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

/* Calls `fn(fields, count, arg)` for each non-empty, non-comment line; stops when it returns non-zero. */
static int each_line(char *text, int max_fields, int (*fn)(char **, int, void *), void *arg) {
  char *line = text;
  while (line && *line) {
    char *next = strchr(line, '\n');
    if (next) *next++ = 0;
    if (*line && *line != '#') {
      char *fields[8];
      int n = split_fields(line, fields, max_fields);
      int stop = fn(fields, n, arg);
      /* Restore the separators so the text can be scanned again. */
      for (int i = 1; i < n; i++) fields[i][-1] = ':';
      if (stop) {
        if (next) next[-1] = '\n';
        return stop;
      }
    }
    if (next) next[-1] = '\n';
    line = next;
  }
  return 0;
}

struct passwd_query {
  const char *name;
  int by_uid;
  uint32_t uid;
  int found;
  uint32_t found_uid, found_gid;
  char name_out[256], home[1024];
};

static int passwd_match(char **f, int n, void *arg) {
  struct passwd_query *q = arg;
  if (n < 4) return 0;
  uint32_t uid, gid;
  if (parse_id(f[2], &uid) < 0 || parse_id(f[3], &gid) < 0) return 0;
  if (q->by_uid ? uid != q->uid : strcmp(f[0], q->name) != 0) return 0;
  q->found = 1;
  q->found_uid = uid;
  q->found_gid = gid;
  snprintf(q->name_out, sizeof q->name_out, "%s", f[0]);
  snprintf(q->home, sizeof q->home, "%s", n >= 6 && f[5][0] ? f[5] : "/");
  return 1;
}

struct group_query {
  const char *name;
  int found;
  uint32_t gid;
};

static int group_match(char **f, int n, void *arg) {
  struct group_query *q = arg;
  uint32_t gid;
  if (n < 3 || parse_id(f[2], &gid) < 0 || strcmp(f[0], q->name) != 0) return 0;
  q->found = 1;
  q->gid = gid;
  return 1;
}

struct member_query {
  const char *name;
  struct identity *id;
};

static int member_match(char **f, int n, void *arg) {
  struct member_query *q = arg;
  uint32_t gid;
  if (n < 4 || parse_id(f[2], &gid) < 0) return 0;
  size_t len = strlen(q->name);
  for (const char *m = f[3]; *m;) {
    const char *end = strchr(m, ',');
    size_t mlen = end ? (size_t)(end - m) : strlen(m);
    if (mlen == len && strncmp(m, q->name, len) == 0) {
      if (q->id->ngroups < MAX_GROUPS) q->id->groups[q->id->ngroups++] = gid;
      break;
    }
    if (!end) break;
    m = end + 1;
  }
  return 0;
}

/*
 * Resolves `user` (`name`, `uid`, optionally `:group` or `:gid`) like runc: a name must exist in
 * /etc/passwd; a uid need not (its gid is then the uid and HOME is /); supplementary groups are
 * the /etc/group entries listing the user's name. Returns -1 with the reason in `err`.
 */
static int resolve_user(char *user, struct identity *id, char *err, size_t errlen) {
  memset(id, 0, sizeof *id);
  snprintf(id->home, sizeof id->home, "/");
  char *group_part = strchr(user, ':');
  if (group_part) *group_part++ = 0;
  err[0] = 0;
  char *passwd = read_account_file("/etc/passwd", err, errlen);
  if (!passwd) return -1;
  struct passwd_query pq = {.name = user};
  pq.by_uid = parse_id(user, &pq.uid) == 0;
  each_line(passwd, 7, passwd_match, &pq);
  free(passwd);
  if (pq.found) {
    id->uid = pq.found_uid;
    id->gid = pq.found_gid;
    snprintf(id->home, sizeof id->home, "%s", pq.home);
  } else if (pq.by_uid) {
    id->uid = id->gid = pq.uid;
  } else {
    snprintf(err, errlen, "unable to find user %s: no matching entries in passwd file", user);
    return -1;
  }
  int need_group_file = pq.found || (group_part && *group_part && parse_id(group_part, &id->gid) < 0);
  if (!need_group_file) return 0;
  char *group = read_account_file("/etc/group", err, errlen);
  if (!group) return -1;
  int rc = 0;
  if (group_part && *group_part && parse_id(group_part, &id->gid) < 0) {
    struct group_query gq = {.name = group_part};
    each_line(group, 4, group_match, &gq);
    if (gq.found) {
      id->gid = gq.gid;
    } else {
      snprintf(err, errlen, "unable to find group %s: no matching entries in group file", group_part);
      rc = -1;
    }
  }
  if (rc == 0 && pq.found) {
    struct member_query mq = {.name = pq.name_out, .id = id};
    each_line(group, 4, member_match, &mq);
  }
  free(group);
  return rc;
}

/* The child side of an exec: identity, cwd, stdio, then execvp with the session's environment. */
static void exec_child(const char *cwd, char **argv, char **envp, uint32_t uid, uint32_t gid, uint32_t ngroups,
                       const gid_t *groups, int in, int out, int err, const char *slave, int background) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  setsid();
  if (background) setpriority(PRIO_PROCESS, 0, 10);
  if (slave) {
    int fd = open(slave, O_RDWR);
    if (fd < 0) _exit(126);
    ioctl(fd, TIOCSCTTY, 0);
    dup2(fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    if (fd > 2) close(fd);
  } else {
    int null_in = in;
    if (null_in < 0) null_in = open("/dev/null", O_RDONLY);
    if (null_in >= 0) dup2(null_in, 0);
    dup2(out, 1);
    dup2(err, 2);
  }
  if (setgroups(ngroups, groups) < 0 && errno != EPERM) {
    dprintf(2, "corral: setgroups: %s\n", strerror(errno));
    _exit(126);
  }
  if (setgid(gid) < 0 || setuid(uid) < 0) {
    dprintf(2, "corral: cannot run as %u:%u: %s\n", uid, gid, strerror(errno));
    _exit(126);
  }
  if (cwd[0] && chdir(cwd) < 0) {
    dprintf(2, "corral: cannot enter %s: %s\n", cwd, strerror(errno));
    _exit(126);
  }
  environ = envp;
  execvp(argv[0], argv);
  int e = errno;
  dprintf(2, "corral: cannot run %s: %s\n", argv[0], strerror(e));
  _exit(e == ENOENT ? 127 : 126);
}

/* Ends a session before it started a process: `message` on stderr, exit status 126. */
static int refuse_exec(struct session *s, const char *message) {
  char line[1200];
  int n = snprintf(line, sizeof line, "corral: %s\n", message);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
  queue_frame(s, F_STDERR, line, (size_t)n);
  s->pid = -1;
  s->exited = 1;
  s->code = 126;
  s->deadline = now_ms();
  return 0;
}

/*
 * Parses an exec frame and starts the process. With `as_user`, the frame's uid, gid and groups
 * are replaced by the user spec that follows the environment, resolved here (see resolve_user),
 * and HOME is added from /etc/passwd when the environment has none. Returns -1 to drop the session.
 */
static int start_exec(struct session *s, const unsigned char *p, uint32_t len, int as_user) {
  if (s->pid != 0 || len < 28) return -1;
  uint32_t flags = get_u32(p), size = get_u32(p + 4), uid = get_u32(p + 8), gid = get_u32(p + 12);
  uint32_t ngroups = get_u32(p + 16), argc = get_u32(p + 20), envc = get_u32(p + 24);
  unsigned short rows = size >> 16, cols = size & 0xffff;
  if (ngroups > 256 || argc == 0 || argc > len || envc > len) return -1;
  size_t pos = 28;
  if (len - pos < (size_t)ngroups * 4) return -1;
  gid_t groups[MAX_GROUPS];
  for (uint32_t i = 0; i < ngroups; i++, pos += 4) groups[i] = get_u32(p + pos);
  /* Strings: cwd, argv..., env..., [user]; each NUL-terminated. */
  size_t count = 1 + (size_t)argc + envc + (as_user ? 1 : 0);
  char **strings = calloc(count + 2, sizeof(char *));
  if (!strings) return -1;
  for (size_t i = 0; i < count; i++) {
    const unsigned char *end = memchr(p + pos, 0, len - pos);
    if (!end) {
      free(strings);
      return -1;
    }
    strings[i] = (char *)(p + pos);
    pos = (size_t)(end - p) + 1;
  }
  char *cwd = strings[0];
  char *user = as_user ? strings[count - 1] : NULL;
  /* With FLAG_INHERIT_ENV: the agent's own environment first, minus what the frame sets (and HOME for another user). */
  size_t ninherit = 0;
  if (flags & FLAG_INHERIT_ENV)
    for (char **e = environ; *e; e++) ninherit++;
  char **argv = malloc((argc + 1) * sizeof(char *));
  char **envp = malloc((ninherit + envc + 2) * sizeof(char *));
  if (!argv || !envp) {
    free(strings);
    free(argv);
    free(envp);
    return -1;
  }
  for (uint32_t i = 0; i < argc; i++) argv[i] = strings[1 + i];
  argv[argc] = NULL;
  int has_home = 0;
  size_t nenv = 0;
  for (size_t i = 0; i < ninherit; i++) {
    const char *entry = environ[i];
    const char *eq = strchr(entry, '=');
    size_t name_len = eq ? (size_t)(eq - entry) + 1 : strlen(entry);
    int overridden = user != NULL && strncmp(entry, "HOME=", 5) == 0;
    for (uint32_t j = 0; j < envc && !overridden; j++) overridden = strncmp(strings[1 + argc + j], entry, name_len) == 0;
    if (!overridden) {
      envp[nenv++] = (char *)entry;
      has_home |= strncmp(entry, "HOME=", 5) == 0;
    }
  }
  for (uint32_t i = 0; i < envc; i++) {
    char *entry = strings[1 + argc + i];
    envp[nenv++] = entry;
    has_home |= strncmp(entry, "HOME=", 5) == 0;
    if (strncmp(entry, MARKER_NAME, strlen(MARKER_NAME)) == 0 && strlen(entry) < sizeof s->marker) snprintf(s->marker, sizeof s->marker, "%s", entry);
  }
  envp[nenv] = NULL;
  free(strings);
  char home_env[1100];
  if (user) {
    /* The frame's payload is ours to modify: split the spec in place. */
    static struct identity id;
    char err[1100];
    if (resolve_user(user, &id, err, sizeof err) < 0) {
      free(argv);
      free(envp);
      return refuse_exec(s, err);
    }
    uid = id.uid;
    gid = id.gid;
    ngroups = id.ngroups;
    memcpy(groups, id.groups, sizeof(gid_t) * id.ngroups);
    if (!has_home) {
      snprintf(home_env, sizeof home_env, "HOME=%s", id.home);
      envp[nenv] = home_env;
      envp[nenv + 1] = NULL;
    }
  }
  s->uid = uid;
  s->gid = gid;

  int child_in = -1, child_out = -1, child_err = -1;
  char slave[128] = {0};
  int ok = 0;
  if (flags & FLAG_TTY) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0 && ptsname_r(master, slave, sizeof slave) == 0) {
      struct winsize ws = {.ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80};
      ioctl(master, TIOCSWINSZ, &ws);
      fcntl(master, F_SETFL, O_NONBLOCK);
      s->tty = s->out = s->in = master;
      ok = 1;
    } else if (master >= 0) {
      close(master);
    }
  } else {
    int o[2], e[2], i[2] = {-1, -1};
    if (pipe2(o, O_CLOEXEC) == 0) {
      if (pipe2(e, O_CLOEXEC) == 0) {
        if (!(flags & FLAG_STDIN) || pipe2(i, O_CLOEXEC) == 0) {
          s->out = o[0];
          s->err = e[0];
          s->in = i[1];
          child_out = o[1];
          child_err = e[1];
          child_in = i[0];
          fcntl(s->out, F_SETFL, O_NONBLOCK);
          fcntl(s->err, F_SETFL, O_NONBLOCK);
          if (s->in >= 0) fcntl(s->in, F_SETFL, O_NONBLOCK);
          ok = 1;
        } else {
          close(e[0]);
          close(e[1]);
          close(o[0]);
          close(o[1]);
        }
      } else {
        close(o[0]);
        close(o[1]);
      }
    }
  }
  pid_t pid = ok ? fork() : -1;
  if (pid == 0) exec_child(cwd, argv, envp, uid, gid, ngroups, groups, child_in, child_out, child_err, (flags & FLAG_TTY) ? slave : NULL,
                             (flags & FLAG_BACKGROUND) != 0);
  free(argv);
  free(envp);
  close_fd(&child_in);
  close_fd(&child_out);
  close_fd(&child_err);
  if (pid < 0) {
    const char *msg = "corral: cannot start the process\n";
    queue_frame(s, F_STDERR, msg, strlen(msg));
    s->exited = 1;
    s->code = 126;
    s->deadline = now_ms();
    return 0;
  }
  s->pid = pid;
  unsigned char b[4];
  put_u32(b, (uint32_t)pid);
  return queue_frame(s, F_PID, b, 4);
}

/* Whether `environ` (NUL-separated, `len` bytes) holds the entry `marker` exactly. */
static int environ_has(const char *environ, size_t len, const char *marker) {
  size_t mlen = strlen(marker);
  for (size_t i = 0; i < len;) {
    const char *entry = environ + i;
    size_t elen = strnlen(entry, len - i);
    if (elen == mlen && memcmp(entry, marker, mlen) == 0) return 1;
    i += elen + 1;
  }
  return 0;
}

/*
 * Signals every process of the sandbox whose environment carries `marker` (an exec's children
 * that left its process group with setsid), from a helper child running as the exec's user (it
 * can read those processes' /proc/<pid>/environ; the agent, as PID 1, reaps it). Each candidate
 * is pinned with a pidfd first; it is signalled through that pidfd only if it is still alive
 * after its environment matched, so a pid reused meanwhile is never signalled. Three rounds
 * catch processes forked while a round ran.
 */
static void signal_marked(const char *marker, uint32_t uid, uint32_t gid, int sig) {
  pid_t helper = fork();
  if (helper != 0) return;
  syscall(SYS_close_range, 3, ~0u, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if ((setgroups(0, NULL) < 0 && errno != EPERM) || setgid(gid) < 0 || setuid(uid) < 0) _exit(1);
  size_t cap = 4u << 20;
  char *environ_buf = malloc(cap);
  if (!environ_buf) _exit(1);
  pid_t self = getpid();
  for (int round = 0; round < 3; round++) {
    int found = 0;
    DIR *proc = opendir("/proc");
    if (!proc) _exit(1);
    struct dirent *entry;
    while ((entry = readdir(proc))) {
      uint32_t id;
      if (parse_id(entry->d_name, &id) < 0 || id <= 1 || (pid_t)id == self) continue;
      int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)id, 0);
      if (pidfd < 0) continue;
      char path[64];
      snprintf(path, sizeof path, "/proc/%u/environ", id);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      size_t len = 0;
      if (fd >= 0) {
        ssize_t n;
        while (len < cap && (n = read(fd, environ_buf + len, cap - len)) > 0) len += (size_t)n;
        close(fd);
      }
      if (len > 0 && environ_has(environ_buf, len, marker) && syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0) {
        syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
        found = 1;
      }
      close(pidfd);
    }
    closedir(proc);
    if (!found) break;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 20 * 1000000};
    nanosleep(&pause, NULL);
  }
  _exit(0);
}

/* Handles one complete frame from the host. Returns -1 to drop the session. */
static int handle_frame(struct session *s, unsigned char type, const unsigned char *p, uint32_t len) {
  switch (type) {
    case F_EXEC:
    case F_EXEC_AS_USER:
      return start_exec(s, (unsigned char *)p, len, type == F_EXEC_AS_USER);
    case F_STDIN:
      if (s->in < 0 || s->stdin_close_pending) return 0;
      if (reserve(&s->ibuf, len) < 0) return -1;
      memcpy(s->ibuf.data + s->ibuf.len, p, len);
      s->ibuf.len += len;
      return 0;
    case F_STDIN_CLOSE:
      if (s->tty < 0) s->stdin_close_pending = 1;
      return 0;
    case F_SIGNAL:
      if (len >= 4 && s->pid > 0 && !s->exited) {
        int sig = (int)get_u32(p);
        /* The agent is the process's parent: until it reaps it, its pid (and group id) cannot be reused. */
        if (kill(-s->pid, sig) < 0) kill(s->pid, sig);
        if (sig == SIGKILL && s->marker[0]) signal_marked(s->marker, s->uid, s->gid, sig);
      }
      return 0;
    case F_LISTENER: {
      /* Only a listening Unix stream socket, passed with this frame, on a Unix listener. */
      int fd = s->passed_fd, accepting = 0, domain = 0, kind = 0;
      socklen_t l1 = sizeof accepting, l2 = sizeof domain, l3 = sizeof kind;
      if (!listener_is_unix || fd < 0 || s->pid > 0 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &l1) < 0 ||
          getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l2) < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &kind, &l3) < 0 || !accepting ||
          domain != AF_UNIX || kind != SOCK_STREAM || dup2(fd, agent_listener) < 0)
        return -1;
      close_fd(&s->passed_fd);
      fcntl(agent_listener, F_SETFL, O_NONBLOCK);
      /*
       * Then the agent executes itself again (pid, children, seccomp filter and listener kept):
       * CRIU restored its memory into an address space that belongs to the host's user namespace,
       * and being non-dumpable that would keep a later CRIU dump, which checks the sandbox's
       * namespaces from inside its user namespace, out of /proc/1. A fresh exec belongs to the
       * sandbox's. Sent before: the answer (9 bytes into an idle socket).
       */
      unsigned char reply[HEADER + 4] = {F_EXIT, 0, 0, 0, 4, 0, 0, 0, 0};
      if (write(s->conn, reply, sizeof reply) != (ssize_t)sizeof reply) return -1;
      char resume[32];
      snprintf(resume, sizeof resume, "--resume=%d", (int)main_pid);
      char *args[] = {"/dev/init", "init", resume, NULL};
      fcntl(agent_listener, F_SETFD, 0);
      if (agent_listener != 3 && dup2(agent_listener, 3) < 0) return -1;
      execv("/proc/self/exe", args);
      fprintf(stderr, "corral-agent: re-executing after a restore: %s\n", strerror(errno));
      if (agent_listener != 3) close(3);
      fcntl(agent_listener, F_SETFD, FD_CLOEXEC);
      s->exited = s->exit_sent = 1;
      return 0;
    }
    case F_RESIZE:
      if (len >= 4 && s->tty >= 0) {
        struct winsize ws = {.ws_row = (unsigned short)((p[0] << 8) | p[1]), .ws_col = (unsigned short)((p[2] << 8) | p[3])};
        ioctl(s->tty, TIOCSWINSZ, &ws);
      }
      return 0;
    default:
      return -1;
  }
}

/* Reads what the host sent and handles every complete frame. Returns -1 when the host is gone. */
static int read_conn(struct session *s) {
  if (reserve(&s->rbuf, READ_CHUNK) < 0) return -1;
  struct iovec iov = {.iov_base = s->rbuf.data + s->rbuf.len, .iov_len = READ_CHUNK};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t n = recvmsg(s->conn, &msg, MSG_CMSG_CLOEXEC);
  if (n > 0 && msg.msg_controllen > 0) {
    /* At most one descriptor is kept (the newest); anything else that came along is closed. */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        close_fd(&s->passed_fd);
        s->passed_fd = fd;
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) close_fd(&s->passed_fd);
  }
  if (n == 0) return -1;
  if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
  s->rbuf.len += (size_t)n;
  while (s->rbuf.len - s->rbuf.off >= HEADER) {
    unsigned char *p = s->rbuf.data + s->rbuf.off;
    uint32_t len = get_u32(p + 1);
    if (len > MAX_FRAME || (!s->authed && len > 64)) return -1;
    if (s->rbuf.len - s->rbuf.off < HEADER + (size_t)len) {
      if (reserve(&s->rbuf, HEADER + (size_t)len) < 0) return -1;
      break;
    }
    if (!s->authed) {
      /* Nothing is honoured before the handshake: the first frame must be the right `A`. */
      if (p[0] != F_AUTH || !auth_matches(s, p + HEADER, len)) return -1;
      s->authed = 1;
    } else if (handle_frame(s, p[0], p + HEADER, len) < 0) {
      return -1;
    }
    s->rbuf.off += HEADER + (size_t)len;
  }
  return 0;
}

/* Moves one chunk of the process's output into the outgoing buffer. */
static void read_output(struct session *s, int *fd, char type) {
  if (reserve(&s->wbuf, HEADER + READ_CHUNK) < 0) return;
  ssize_t n = read(*fd, s->wbuf.data + s->wbuf.len + HEADER, READ_CHUNK);
  if (n > 0) {
    unsigned char *p = s->wbuf.data + s->wbuf.len;
    p[0] = (unsigned char)type;
    put_u32(p + 1, (uint32_t)n);
    s->wbuf.len += HEADER + (size_t)n;
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  /* EOF, or EIO from a tty master once the last slave holder closed it. */
  if (*fd == s->tty) {
    s->out = -1;
    if (s->in == s->tty) s->in = -1;
    close_fd(&s->tty);
  } else {
    close_fd(fd);
  }
}

static int write_conn(struct session *s) {
  while (s->wbuf.off < s->wbuf.len) {
    ssize_t n = write(s->conn, s->wbuf.data + s->wbuf.off, s->wbuf.len - s->wbuf.off);
    if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    s->wbuf.off += (size_t)n;
  }
  s->wbuf.off = s->wbuf.len = 0;
  return 0;
}

static void write_stdin(struct session *s) {
  while (s->ibuf.off < s->ibuf.len && s->in >= 0) {
    ssize_t n = write(s->in, s->ibuf.data + s->ibuf.off, s->ibuf.len - s->ibuf.off);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      s->ibuf.off = s->ibuf.len = 0; /* The process closed its stdin. */
      if (s->in != s->tty) close_fd(&s->in);
      return;
    }
    s->ibuf.off += (size_t)n;
  }
  s->ibuf.off = s->ibuf.len = 0;
  if (s->stdin_close_pending && s->in >= 0 && s->in != s->tty) close_fd(&s->in);
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == main_pid) exit(exit_code(status));
    for (int i = 0; i < session_count; i++) {
      struct session *s = sessions[i];
      if (s->pid == pid && !s->exited) {
        s->exited = 1;
        s->code = exit_code(status);
        s->deadline = now_ms() + DRAIN_MS;
        if (s->in != s->tty) close_fd(&s->in);
      }
    }
  }
}

/* Once the process exited and its output drained (or the drain time passed), sends the exit frame. */
static void maybe_finish(struct session *s, long long now) {
  if (!s->exited || s->exit_sent) return;
  if (s->out >= 0 || s->err >= 0) {
    if (now < s->deadline) return;
    if (s->tty >= 0) {
      s->out = -1;
      s->in = -1;
      close_fd(&s->tty);
    }
    close_fd(&s->out);
    close_fd(&s->err);
  }
  unsigned char b[4];
  put_u32(b, (uint32_t)s->code);
  queue_frame(s, F_EXIT, b, 4);
  s->exit_sent = 1;
}

/* Loads a classic BPF seccomp program (an array of struct sock_filter) from `fd`. */
static int load_seccomp(int fd) {
  static struct sock_filter program[BPF_MAXINSNS];
  size_t size = 0;
  ssize_t n;
  while ((n = read(fd, (char *)program + size, sizeof program - size)) > 0) size += (size_t)n;
  close(fd);
  if (n < 0 || size == 0 || size % sizeof(struct sock_filter) != 0 || size == sizeof program) {
    fprintf(stderr, "corral-agent: the seccomp program is unreadable or malformed (%zu bytes)\n", size);
    return -1;
  }
  struct sock_fprog prog = {.len = (unsigned short)(size / sizeof(struct sock_filter)), .filter = program};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
    fprintf(stderr, "corral-agent: loading the seccomp filter: %s\n", strerror(errno));
    return -1;
  }
  return 0;
}

/*
 * Copies the secret from the environment variable `name` into agent_secret, then wipes the
 * variable's bytes where they are (the initial environment, which /proc/<pid>/environ shows) and
 * removes it, so nothing the agent starts inherits it.
 */
static int take_secret(const char *name) {
  char *value = name ? getenv(name) : NULL;
  size_t len = value ? strlen(value) : 0;
  if (len < 16 || len > sizeof agent_secret) {
    fprintf(stderr, "corral-agent: --listen-tcp needs --secret-env naming a variable of 16 to %zu bytes\n", sizeof agent_secret);
    return -1;
  }
  memcpy(agent_secret, value, len);
  agent_secret_len = len;
  /* getenv points into the entry `<name>=<value>`: unset it, then wipe the whole entry. */
  char *entry = value - strlen(name) - 1;
  unsetenv(name);
  explicit_bzero(entry, strlen(name) + 1 + len);
  return 0;
}

/* Listens on `[<IPv4 address>:]<port>` (every address when none is given). Returns the socket or -1. */
static int listen_on_tcp(const char *spec) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
  char host[64] = {0};
  const char *colon = strrchr(spec, ':');
  const char *port_text = colon ? colon + 1 : spec;
  if (colon) {
    size_t n = (size_t)(colon - spec);
    if (n >= sizeof host) n = sizeof host - 1;
    memcpy(host, spec, n);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
      fprintf(stderr, "corral-agent: not an IPv4 address: %s\n", host);
      return -1;
    }
  }
  uint32_t port;
  if (parse_id(port_text, &port) < 0 || port == 0 || port > 65535) {
    fprintf(stderr, "corral-agent: not a port: %s\n", port_text);
    return -1;
  }
  addr.sin_port = htons((uint16_t)port);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      listen(fd, 1024) < 0) {
    fprintf(stderr, "corral-agent: listening on TCP %s: %s\n", spec, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

/* A new session on `conn`; a TCP one (a secret is set) first gets its challenge and must answer it. */
static struct session *open_session(int conn) {
  struct session *fresh = calloc(1, sizeof *fresh);
  if (!fresh) return NULL;
  fresh->conn = conn;
  fresh->out = fresh->err = fresh->in = fresh->tty = fresh->passed_fd = -1;
  fresh->authed = agent_secret_len == 0;
  fresh->accepted = now_ms();
  if (!fresh->authed) {
    int one = 1;
    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (getrandom(fresh->nonce, NONCE_LEN, 0) != NONCE_LEN || queue_frame(fresh, F_NONCE, fresh->nonce, NONCE_LEN) < 0) {
      free(fresh->wbuf.data);
      free(fresh);
      return NULL;
    }
  }
  return fresh;
}

static int run_init(int argc, char **argv) {
  int first = 2;
  int seccomp_fd = -1;
  const char *listen_path = NULL, *listen_tcp = NULL, *secret_env = NULL;
  /* --resume=<pid>: this agent re-executed itself after a memory restore (see F_LISTENER); its
   * start command already runs as <pid> and its listener is fd 3. */
  pid_t resume_pid = 0;
  for (; first < argc && strncmp(argv[first], "--", 2) == 0 && argv[first][2] != 0; first++) {
    if (strncmp(argv[first], "--seccomp-fd=", 13) == 0) seccomp_fd = atoi(argv[first] + 13);
    else if (strncmp(argv[first], "--listen=", 9) == 0) listen_path = argv[first] + 9;
    else if (strncmp(argv[first], "--listen-tcp=", 13) == 0) listen_tcp = argv[first] + 13;
    else if (strncmp(argv[first], "--secret-env=", 13) == 0) secret_env = argv[first] + 13;
    else if (strncmp(argv[first], "--resume=", 9) == 0) resume_pid = atoi(argv[first] + 9);
    else {
      fprintf(stderr, "corral-agent init: unknown option %s\n", argv[first]);
      return 2;
    }
  }
  if (resume_pid > 0) {
    /* Executed again through /proc/self/exe, which names the process "exe": take the name a
     * fresh sandbox's PID 1 has, the basename of argv[0] (/dev/init). */
    const char *slash = strrchr(argv[0], '/');
    prctl(PR_SET_NAME, slash ? slash + 1 : argv[0], 0, 0, 0);
  }
  if (first < argc && strcmp(argv[first], "--") == 0) first++;
  if (first >= argc) {
    if (resume_pid <= 0) {
      fprintf(stderr, "corral-agent init: no command\n");
      return 2;
    }
  }
  int listener = 3;
  if (listen_tcp) {
    if (listen_path || take_secret(secret_env) < 0 || (listener = listen_on_tcp(listen_tcp)) < 0) return 1;
  } else if (listen_path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(listen_path) >= sizeof addr.sun_path) {
      fprintf(stderr, "corral-agent: socket path too long: %s\n", listen_path);
      return 1;
    }
    /* Bound under a temporary name and renamed once listening: the path appears ready. */
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s.%d", listen_path, (int)getpid());
    if (strlen(addr.sun_path) >= sizeof addr.sun_path - 1) {
      fprintf(stderr, "corral-agent: socket path too long: %s\n", listen_path);
      return 1;
    }
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(addr.sun_path);
    mode_t old = umask(077);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 1024) < 0 || rename(addr.sun_path, listen_path) < 0) {
      fprintf(stderr, "corral-agent: listening on %s: %s\n", listen_path, strerror(errno));
      return 1;
    }
    umask(old);
  }
  int accepting = 0;
  socklen_t optlen = sizeof accepting;
  if (getsockopt(listener, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &optlen) < 0 || !accepting) listener = -1;
  if (listener >= 0) {
    fcntl(listener, F_SETFD, FD_CLOEXEC);
    fcntl(listener, F_SETFL, O_NONBLOCK);
  }
  agent_listener = listener;
  listener_is_unix = listener >= 0 && !listen_tcp;
  if (seccomp_fd >= 0 && load_seccomp(seccomp_fd) < 0) return 1;
  prctl(PR_SET_DUMPABLE, 0);
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigfillset(&mask);
  sigdelset(&mask, SIGSEGV);
  sigdelset(&mask, SIGBUS);
  sigdelset(&mask, SIGFPE);
  sigdelset(&mask, SIGILL);
  sigdelset(&mask, SIGPIPE);
  sigprocmask(SIG_SETMASK, &mask, NULL);
  int sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigfd < 0) {
    perror("corral-agent: signalfd");
    return 1;
  }
  main_pid = resume_pid > 0 ? resume_pid : fork();
  if (main_pid < 0) {
    perror("corral-agent: fork");
    return 1;
  }
  /* Children that ended while the agent re-executed itself are reaped now. */
  if (resume_pid > 0) reap();
  if (main_pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    execvp(argv[first], argv + first);
    fprintf(stderr, "corral-agent: cannot run %s: %s\n", argv[first], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }

  static struct pollfd fds[2 + MAX_SESSIONS * 5];
  static struct {
    struct session *s;
    int kind;
  } owners[2 + MAX_SESSIONS * 5];
  static struct session *dropped[MAX_SESSIONS];
  for (;;) {
    int n = 0;
    fds[n] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    owners[n++].s = NULL;
    if (listener >= 0 && session_count < MAX_SESSIONS) {
      fds[n] = (struct pollfd){.fd = listener, .events = POLLIN};
      owners[n++].s = NULL;
    }
    long long now = now_ms();
    int timeout = -1;
    for (int i = 0; i < session_count; i++) {
      struct session *s = sessions[i];
      if (s->in < 0) s->ibuf.off = s->ibuf.len = 0;
      size_t pending = s->wbuf.len - s->wbuf.off;
      short conn_events = 0;
      if ((!s->exit_sent && s->ibuf.len == s->ibuf.off) || s->shut) conn_events |= POLLIN;
      if (pending > 0) conn_events |= POLLOUT;
      fds[n] = (struct pollfd){.fd = s->conn, .events = conn_events};
      owners[n].s = s;
      owners[n++].kind = 0;
      if (pending < OUT_HIGH_WATER) {
        if (s->out >= 0) {
          fds[n] = (struct pollfd){.fd = s->out, .events = POLLIN};
          owners[n].s = s;
          owners[n++].kind = 1;
        }
        if (s->err >= 0) {
          fds[n] = (struct pollfd){.fd = s->err, .events = POLLIN};
          owners[n].s = s;
          owners[n++].kind = 2;
        }
      }
      if (s->in >= 0 && s->ibuf.len > s->ibuf.off) {
        fds[n] = (struct pollfd){.fd = s->in, .events = POLLOUT};
        owners[n].s = s;
        owners[n++].kind = 3;
      }
      if (!s->authed) {
        long long left = s->accepted + AUTH_MS - now;
        int t = left < 0 ? 0 : (int)left;
        if (timeout < 0 || t < timeout) timeout = t;
      }
      if ((s->exited && !s->exit_sent) || s->shut) {
        long long left = s->deadline - now;
        int t = left < 0 ? 0 : (int)left;
        if (timeout < 0 || t < timeout) timeout = t;
      }
    }
    if (poll(fds, (nfds_t)n, timeout) < 0) {
      if (errno == EINTR) continue;
      perror("corral-agent: poll");
      return 1;
    }
    int ndropped = 0;
    for (int k = 0; k < n; k++) {
      if (!fds[k].revents) continue;
      struct session *s = owners[k].s;
      if (!s) {
        if (fds[k].fd == sigfd) {
          struct signalfd_siginfo info;
          while (read(sigfd, &info, sizeof info) == sizeof info) {
            if (info.ssi_signo == SIGCHLD) continue;
            kill(main_pid, (int)info.ssi_signo);
          }
          reap();
        } else {
          int conn;
          while (session_count < MAX_SESSIONS && (conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            struct session *fresh = open_session(conn);
            if (!fresh) {
              close(conn);
              break;
            }
            /* Connections still owing their handshake are capped: the oldest gives way. */
            int waiting = 0, oldest = -1;
            for (int i = 0; i < session_count; i++) {
              if (sessions[i]->authed || sessions[i]->doomed) continue;
              waiting++;
              if (oldest < 0 || sessions[i]->accepted < sessions[oldest]->accepted) oldest = i;
            }
            if (!fresh->authed && waiting >= MAX_UNAUTHED && oldest >= 0) {
              /* Freed with the other dropped sessions below (events of this round may still name it). */
              sessions[oldest]->doomed = 1;
              dropped[ndropped++] = sessions[oldest];
            }
            sessions[session_count++] = fresh;
          }
        }
        continue;
      }
      int dead = 0;
      for (int d = 0; d < ndropped; d++) dead |= dropped[d] == s;
      if (dead) continue;
      int drop = 0;
      switch (owners[k].kind) {
        case 0:
          if (s->shut) {
            /* Discard what the host still sends; its close (EOF) ends the session. */
            char scratch[4096];
            ssize_t got = read(s->conn, scratch, sizeof scratch);
            drop |= got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR);
            break;
          }
          if (fds[k].revents & POLLOUT) drop |= write_conn(s) < 0;
          if (!drop && (fds[k].revents & (POLLIN | POLLHUP | POLLERR))) drop |= read_conn(s) < 0;
          break;
        case 1:
          if (s->out >= 0) read_output(s, &s->out, F_STDOUT);
          break;
        case 2:
          if (s->err >= 0) read_output(s, &s->err, F_STDERR);
          break;
        case 3:
          write_stdin(s);
          break;
      }
      if (drop) dropped[ndropped++] = s;
    }
    now = now_ms();
    for (int i = 0; i < session_count; i++) {
      struct session *s = sessions[i];
      int dead = 0;
      for (int d = 0; d < ndropped; d++) dead |= dropped[d] == s;
      if (!dead) {
        if (s->stdin_close_pending) write_stdin(s);
        maybe_finish(s, now);
        if (s->wbuf.len > s->wbuf.off && write_conn(s) < 0) dead = 1;
        else if (s->exit_sent && s->wbuf.len == s->wbuf.off && !s->shut) {
          /*
           * Closing now could drop frames the host sent meanwhile unread, which makes the kernel
           * reset the connection and the host lose the exit frame: shut our side down and let the
           * host close first.
           */
          shutdown(s->conn, SHUT_WR);
          s->shut = 1;
          s->deadline = now + LINGER_MS;
        } else if (s->shut && now >= s->deadline) {
          dead = 1;
        } else if (!s->authed && now >= s->accepted + AUTH_MS) {
          dead = 1;
        }
      }
      if (dead) {
        free_session(i);
        i--;
      }
    }
  }
}

/* --- shim ------------------------------------------------------------------------------------ */

static const char *exit_file, *oom_file;

/* Where a restoring shim keeps the new listening socket for CRIU (see run_shim): runc's stdin. */
#define RESTORE_SOCKET_FD 0

static void record(int code) {
  long long oom = 0;
  FILE *f = fopen(oom_file, "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      if (strncmp(line, "oom_kill ", 9) == 0) oom = atoll(line + 9);
    }
    fclose(f);
  }
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", exit_file);
  FILE *out = fopen(tmp, "w");
  if (!out) _exit(1);
  fprintf(out, "%d %lld\n", code, oom);
  fclose(out);
  rename(tmp, exit_file);
  _exit(0);
}

/*
 * Makes the listening socket. With `netns`, it is created inside that network namespace (and
 * bound on the host path all the same: a path-bound Unix socket is reached by its path from any
 * namespace), so that CRIU, which finds a task's sockets through the sock_diag of its own
 * network namespace, can checkpoint the sandbox's init holding it.
 */
static int make_listener(const char *netns) {
  int home = -1, target = -1;
  if (netns) {
    home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    target = open(netns, O_RDONLY | O_CLOEXEC);
    if (home < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
      fprintf(stderr, "corral shim: entering %s: %s\n", netns, strerror(errno));
      return -1;
    }
    close(target);
  }
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int saved = errno;
  if (netns && setns(home, CLONE_NEWNET) < 0) {
    fprintf(stderr, "corral shim: leaving %s: %s\n", netns, strerror(errno));
    return -1;
  }
  if (home >= 0) close(home);
  errno = saved;
  return sock;
}

/*
 * After a memory restore: the restored agent listens on the socket this shim made in the host's
 * network namespace (the sandbox's did not exist yet), which CRIU could not dump again. Makes a
 * new one inside the restored sandbox's network namespace, bound at `<socket path>.new`, hands it
 * to the agent (F_LISTENER over its current socket), and once the agent answers renames it over
 * <socket path>. Returns 0 when the agent took it.
 */
static int hand_over_listener(long init, const char *socket_path) {
  char netns[64];
  snprintf(netns, sizeof netns, "/proc/%ld/ns/net", init);
  struct sockaddr_un fresh_addr = {.sun_family = AF_UNIX}, agent_addr = {.sun_family = AF_UNIX};
  if ((size_t)snprintf(fresh_addr.sun_path, sizeof fresh_addr.sun_path, "%s.new", socket_path) >= sizeof fresh_addr.sun_path) return -1;
  strcpy(agent_addr.sun_path, socket_path);
  int fresh = make_listener(netns), conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = -1;
  unlink(fresh_addr.sun_path);
  mode_t old = umask(077);
  if (fresh >= 0 && conn >= 0 && bind(fresh, (struct sockaddr *)&fresh_addr, sizeof fresh_addr) == 0 && listen(fresh, 1024) == 0 &&
      connect(conn, (struct sockaddr *)&agent_addr, sizeof agent_addr) == 0) {
    unsigned char frame[HEADER] = {F_LISTENER, 0, 0, 0, 0};
    struct iovec iov = {.iov_base = frame, .iov_len = sizeof frame};
    union {
      struct cmsghdr align;
      char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fresh, sizeof fresh);
    unsigned char reply[HEADER + 4];
    size_t got = 0;
    struct pollfd pfd = {.fd = conn, .events = POLLIN};
    if (sendmsg(conn, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof frame) {
      /* The exit frame answers: 'X', length 4, status 0. */
      while (got < sizeof reply && poll(&pfd, 1, 10000) == 1) {
        ssize_t n = read(conn, reply + got, sizeof reply - got);
        if (n <= 0) break;
        got += (size_t)n;
      }
    }
    if (got == sizeof reply && reply[0] == F_EXIT && get_u32(reply + HEADER) == 0 && rename(fresh_addr.sun_path, socket_path) == 0) ok = 0;
  }
  umask(old);
  if (ok < 0) {
    fprintf(stderr, "corral shim: handing the restored agent its socket in its network namespace failed: %s\n", strerror(errno));
    unlink(fresh_addr.sun_path);
  }
  if (fresh >= 0) close(fresh);
  if (conn >= 0) close(conn);
  return ok;
}

/*
 * The shim copies the sandbox's output outside the sandbox's cgroup: at most LOG_RATE bytes a
 * second (bursts of LOG_BURST), so that printing flat out cannot spend the host's CPU beyond the
 * sandbox's own limit. Past it the pipe fills and the sandbox's writes wait.
 */
#define LOG_RATE (4ll << 20)
#define LOG_BURST (1ll << 20)
static long long log_tokens = LOG_BURST, log_refilled_ms;

static void refill_log_tokens(void) {
  long long now = now_ms();
  if (log_refilled_ms == 0) log_refilled_ms = now;
  log_tokens += (now - log_refilled_ms) * LOG_RATE / 1000;
  if (log_tokens > LOG_BURST) log_tokens = LOG_BURST;
  log_refilled_ms = now;
}

/* Copies what is waiting in the sandbox's output pipe to the log (the shim's stdout), up to the
 * rate's tokens unless `all` (the sandbox ended); closes the pipe at its end. What the log cannot
 * take (a full disk) is dropped, never waited for. */
static void copy_output(int *fd, int all) {
  char buf[65536];
  while (*fd >= 0 && (all || log_tokens > 0)) {
    size_t want = sizeof buf;
    if (!all && (long long)want > log_tokens) want = (size_t)log_tokens;
    ssize_t n = read(*fd, buf, want);
    if (n > 0) {
      log_tokens -= n;
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = write(1, buf + off, (size_t)(n - off));
        if (w <= 0) break;
        off += w;
      }
      continue;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN)) close_fd(fd);
    if (n < 0 && errno == EAGAIN) return;
  }
}

static int run_shim(int argc, char **argv) {
  /* Options first: --netns=<path> (make the socket in it), --restore=<CRIU image> with
   * --criu=<binary>, --work=<dir> and, optionally, --empty-netns (restore instead of run; see
   * the top of this file). */
  const char *netns = NULL, *restore = NULL, *criu = NULL, *work = NULL;
  int empty_netns = 0;
  int first = 2;
  for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
    if (strncmp(argv[first], "--netns=", 8) == 0) netns = argv[first] + 8;
    else if (strncmp(argv[first], "--restore=", 10) == 0) restore = argv[first] + 10;
    else if (strncmp(argv[first], "--criu=", 7) == 0) criu = argv[first] + 7;
    else if (strncmp(argv[first], "--work=", 7) == 0) work = argv[first] + 7;
    else if (strcmp(argv[first], "--empty-netns") == 0) empty_netns = 1;
    else {
      fprintf(stderr, "corral shim: unknown option %s\n", argv[first]);
      return 2;
    }
  }
  argc -= first - 2;
  argv += first - 2;
  if ((argc != 11 && argc != 12) || (restore && (!criu || !work))) {
    fprintf(stderr, "usage: corral-agent shim [--netns=<path>] [--restore=<image> --criu=<criu> --work=<dir> [--empty-netns]] <runtime> <root> <bundle> <pid file> <id> <log> <oom file> <exit file> <socket> [<bpf>]\n");
    return 2;
  }
  const char *runtime = argv[2], *root = argv[3], *bundle = argv[4], *pid_file = argv[5], *id = argv[6], *log = argv[7];
  const char *socket_path = argv[10];
  const char *bpf_path = argc == 12 ? argv[11] : NULL;
  oom_file = argv[8];
  exit_file = argv[9];
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
    perror("corral shim: PR_SET_CHILD_SUBREAPER");
    return 1;
  }
  setsid();
  int null_fd = open("/dev/null", O_RDONLY);
  int log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (null_fd < 0 || log_fd < 0) record(255);
  dup2(null_fd, 0);
  dup2(log_fd, 1);
  dup2(log_fd, 2);
  close(null_fd);
  close(log_fd);

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof addr.sun_path) {
    fprintf(stderr, "corral shim: socket path too long: %s\n", socket_path);
    record(255);
  }
  strcpy(addr.sun_path, socket_path);
  int sock = make_listener(netns);
  unlink(socket_path);
  mode_t old = umask(077);
  if (sock < 0 || bind(sock, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(sock, 1024) < 0) {
    fprintf(stderr, "corral shim: listening on %s: %s\n", socket_path, strerror(errno));
    record(255);
  }
  umask(old);
  /* run: the socket becomes the init's fd 3. restore: CRIU gives it to the restored init in place
   * of the dumped one (`inherit-fd fd[0]:socket:[<ino>]` in the CRIU configuration file the
   * driver writes). It must be one of runc's standard descriptors: runc passes only those (and its
   * control socket, fd 3) on to CRIU. runc does not read its stdin. */
  int sock_fd = restore ? RESTORE_SOCKET_FD : 3;
  if (sock != sock_fd) {
    if (dup2(sock, sock_fd) < 0) record(255);
    close(sock);
  } else {
    fcntl(sock_fd, F_SETFD, 0);
  }
  if (bpf_path && !restore) {
    int bpf = open(bpf_path, O_RDONLY);
    if (bpf < 0 || (bpf != 4 && dup2(bpf, 4) < 0)) {
      fprintf(stderr, "corral shim: %s: %s\n", bpf_path, strerror(errno));
      record(255);
    }
    if (bpf != 4) close(bpf);
  }

  /* The sandbox's stdout and stderr are a pipe the shim copies into the log: CRIU can dump a pipe
   * (and a restore gets the restoring shim's pipe in its place), not a file outside the sandbox's
   * mounts. SIGCHLD is taken through a signalfd. */
  int out_pipe[2] = {-1, -1};
  if (pipe2(out_pipe, O_CLOEXEC) < 0) record(255);
  sigset_t chld, old_mask;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old_mask);
  int chld_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (chld_fd < 0) record(255);

  char pid_tmp[4096];
  snprintf(pid_tmp, sizeof pid_tmp, "%s.tmp", pid_file);
  pid_t runner = fork();
  if (runner < 0) record(255);
  if (runner == 0) {
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    if (dup2(out_pipe[1], 1) < 0 || dup2(out_pipe[1], 2) < 0) _exit(127);
    if (restore) {
      /* The seccomp filter, limits and namespaces come back from the image; the bundle gives the new rootfs and cgroup. */
      const char *args[] = {runtime, "--root", root, "--criu", criu, "restore", "--detach", "--image-path", restore, "--work-path", work, "--bundle", bundle,
                            "--pid-file", pid_tmp, id, NULL, NULL, NULL};
      if (empty_netns) {
        /* The id goes last: options before it. */
        args[15] = "--empty-ns";
        args[16] = "network";
        args[17] = id;
      }
      execvp(runtime, (char *const *)args);
    } else {
      execlp(runtime, runtime, "--root", root, "run", "--detach", "--bundle", bundle, "--pid-file", pid_tmp, "--preserve-fds", bpf_path ? "2" : "1", id,
             (char *)NULL);
    }
    fprintf(stderr, "corral shim: %s: %s\n", runtime, strerror(errno));
    _exit(127);
  }
  /* A restoring shim keeps its socket until the restore is done (see below). */
  if (!restore) close(sock_fd);
  if (bpf_path && !restore) close(4);
  if (out_pipe[1] >= 0) close(out_pipe[1]);
  if (out_pipe[0] >= 0) fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  int status;
  long init = 0;
  int runner_done = 0;
  for (;;) {
    refill_log_tokens();
    /* Out of tokens: the pipe is left alone until enough for a pipe's worth have come back. */
    int copying = out_pipe[0] >= 0 && log_tokens > 0;
    int wait_ms = out_pipe[0] >= 0 && !copying ? (int)((65536 - log_tokens) * 1000 / LOG_RATE) + 1 : -1;
    struct pollfd fds[2] = {{.fd = chld_fd, .events = POLLIN}, {.fd = out_pipe[0], .events = POLLIN}};
    if (poll(fds, copying ? 2 : 1, wait_ms) < 0) {
      if (errno == EINTR) continue;
      record(255);
    }
    if (copying && fds[1].revents) copy_output(&out_pipe[0], 0);
    if (!fds[0].revents) continue;
    struct signalfd_siginfo info;
    while (read(chld_fd, &info, sizeof info) == sizeof info) {
    }
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == runner) {
        runner_done = 1;
        if (exit_code(status) != 0) {
          copy_output(&out_pipe[0], 1);
          record(exit_code(status));
        }
        FILE *f = fopen(pid_tmp, "r");
        if (!f || fscanf(f, "%ld", &init) != 1 || init <= 0) record(255);
        fclose(f);
        if (restore) {
          /* The restored agent holds the same open socket, made blocking by runc's Go runtime
           * (its stdin); the agent accepts until EAGAIN, so it is made non-blocking again first. */
          fcntl(RESTORE_SOCKET_FD, F_SETFL, O_NONBLOCK);
          close(RESTORE_SOCKET_FD);
        }
        /* A restored sandbox the agent of which cannot be handed its socket is not started. */
        if (restore && hand_over_listener(init, socket_path) < 0) {
          kill((pid_t)init, SIGKILL);
          continue;
        }
        rename(pid_tmp, pid_file);
      } else if (runner_done && pid == (pid_t)init) {
        copy_output(&out_pipe[0], 1);
        record(exit_code(status));
      }
    }
    if (pid < 0 && errno == ECHILD && runner_done) record(255);
  }
}

/* --- user namespaces ------------------------------------------------------------------------- */

/*
 * Forks a child that unshares `flags` (CLONE_NEWUSER and more) and waits; the parent writes the
 * mapping into the child's uid_map and gid_map. The child exits when `*release` is closed.
 */
static pid_t mapped_child(int flags, const char *uid, const char *gid, const char *size, int *release) {
  int go[2], ready[2];
  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) return -1;
  pid_t child = fork();
  if (child < 0) return -1;
  if (child == 0) {
    close(go[1]);
    close(ready[0]);
    if (unshare(flags) < 0) _exit(1);
    if (write(ready[1], "u", 1) != 1) _exit(1);
    char byte;
    while (read(go[0], &byte, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  char byte;
  ssize_t n = read(ready[0], &byte, 1);
  close(ready[0]);
  if (n != 1) {
    fprintf(stderr, "corral-agent: unshare(0x%x) failed in the helper child\n", flags);
    close(go[1]);
    waitpid(child, NULL, 0);
    return -1;
  }
  const char *maps[2][2] = {{"uid_map", uid}, {"gid_map", gid}};
  for (int i = 0; i < 2; i++) {
    char path[64], line[96];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)child, maps[i][0]);
    int len = snprintf(line, sizeof line, "0 %s %s\n", maps[i][1], size);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, line, (size_t)len) != len) {
      fprintf(stderr, "corral-agent: writing %s: %s\n", path, strerror(errno));
      if (fd >= 0) close(fd);
      close(go[1]);
      waitpid(child, NULL, 0);
      return -1;
    }
    close(fd);
  }
  *release = go[1];
  return child;
}

static void release_child(pid_t child, int release) {
  close(release);
  waitpid(child, NULL, 0);
}

static int run_netns(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: corral-agent netns <uid> <gid> <size> <userns file> <netns file>\n");
    return 2;
  }
  int release;
  pid_t child = mapped_child(CLONE_NEWUSER | CLONE_NEWNET, argv[2], argv[3], argv[4], &release);
  if (child < 0) return 1;
  const char *kept[2][2] = {{argv[5], "user"}, {argv[6], "net"}};
  for (int i = 0; i < 2; i++) {
    char source[64];
    snprintf(source, sizeof source, "/proc/%d/ns/%s", (int)child, kept[i][1]);
    int fd = open(kept[i][0], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0 || close(fd) < 0 || mount(source, kept[i][0], NULL, MS_BIND, NULL) < 0) {
      fprintf(stderr, "corral-agent: keeping the %s namespace at %s: %s\n", kept[i][1], kept[i][0], strerror(errno));
      release_child(child, release);
      return 1;
    }
  }
  release_child(child, release);
  return 0;
}

struct mount_attr_arg {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int run_idmap_mount(int argc, char **argv) {
  if (argc < 10) {
    fprintf(stderr, "usage: corral-agent idmap-mount <uid> <gid> <size> <scratch> <target> <upper> <work> <layer>...\n");
    return 2;
  }
  const char *scratch = argv[5], *target = argv[6], *upper = argv[7], *work = argv[8];
  int layers = argc - 9;
  int release;
  pid_t child = mapped_child(CLONE_NEWUSER, argv[2], argv[3], argv[4], &release);
  if (child < 0) return 1;
  char ns_path[64];
  snprintf(ns_path, sizeof ns_path, "/proc/%d/ns/user", (int)child);
  int ns = open(ns_path, O_RDONLY | O_CLOEXEC);
  int rc = 1, attached = 0;
  size_t data_len = 64 + strlen(upper) + strlen(work) + (size_t)layers * 12;
  char *data = malloc(data_len);
  char dir[4096];
  if (ns < 0 || !data || mkdir(scratch, 0700) < 0) {
    fprintf(stderr, "corral-agent: preparing %s: %s\n", scratch, strerror(errno));
    goto out;
  }
  /* MOUNT_ATTR_RDONLY | MOUNT_ATTR_IDMAP */
  struct mount_attr_arg attr = {.attr_set = 0x1 | 0x00100000, .userns_fd = (uint64_t)ns};
  for (int i = 0; i < layers; i++) {
    /* OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC */
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, argv[9 + i], 1 | 0x8000 | O_CLOEXEC);
    if (fd < 0) {
      fprintf(stderr, "corral-agent: open_tree %s: %s\n", argv[9 + i], strerror(errno));
      goto out;
    }
    snprintf(dir, sizeof dir, "%s/%d", scratch, i);
    /* AT_EMPTY_PATH; MOVE_MOUNT_F_EMPTY_PATH */
    if (syscall(SYS_mount_setattr, fd, "", 0x1000, &attr, sizeof attr) < 0 || mkdir(dir, 0700) < 0 ||
        syscall(SYS_move_mount, fd, "", AT_FDCWD, dir, 4) < 0) {
      fprintf(stderr, "corral-agent: id-mapping %s: %s\n", argv[9 + i], strerror(errno));
      close(fd);
      rmdir(dir);
      goto out;
    }
    close(fd);
    attached++;
  }
  /* lowerdir is top layer first, relative to scratch (short mount data). */
  int pos = snprintf(data, data_len, "lowerdir=");
  for (int i = layers - 1; i >= 0; i--) pos += snprintf(data + pos, data_len - (size_t)pos, "%d%s", i, i ? ":" : "");
  snprintf(data + pos, data_len - (size_t)pos, ",upperdir=%s,workdir=%s", upper, work);
  if (chdir(scratch) < 0 || mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV, data) < 0) {
    fprintf(stderr, "corral-agent: mounting the overlay at %s: %s\n", target, strerror(errno));
    goto out;
  }
  rc = 0;
out:
  if (chdir("/") < 0) rc = 1;
  for (int i = attached - 1; i >= 0; i--) {
    snprintf(dir, sizeof dir, "%s/%d", scratch, i);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
  }
  rmdir(scratch);
  free(data);
  if (ns >= 0) close(ns);
  release_child(child, release);
  return rc;
}

/* --- exec: one process for an exec API without users or stdin EOF (kubernetes driver) ------- */

/* Reads exactly `len` bytes; 0 on success, -1 at EOF or on an error. */
static int read_full(int fd, unsigned char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static int write_full(int fd, const unsigned char *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, buf + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

/* The relay of --framed-stdin: frames from fd 0 to `out` until the EOF frame, the end of fd 0, or a closed reader. */
static void relay_frames(int out) {
  signal(SIGPIPE, SIG_IGN);
  unsigned char *buf = malloc(65536);
  unsigned char head[4];
  while (buf && read_full(0, head, 4) == 0) {
    uint32_t len = get_u32(head);
    if (len == 0) break;
    while (len > 0) {
      size_t chunk = len > 65536 ? 65536 : len;
      if (read_full(0, buf, chunk) < 0 || write_full(out, buf, chunk) < 0) _exit(0);
      len -= (uint32_t)chunk;
    }
  }
  _exit(0);
}

/* Reads a NUL-separated argv file (at most 64 MiB) into a NULL-terminated array; deletes the file. */
static char **read_argv_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > 64 * 1024 * 1024) {
    close(fd);
    return NULL;
  }
  size_t size = (size_t)st.st_size;
  char *data = malloc(size + 1);
  if (!data || (size > 0 && read_full(fd, (unsigned char *)data, size) < 0)) {
    close(fd);
    return NULL;
  }
  close(fd);
  unlink(path);
  data[size] = 0;
  size_t count = 0;
  for (size_t i = 0; i < size; i++) if (data[i] == 0) count++;
  char **argv = calloc(count + 2, sizeof *argv);
  if (!argv) return NULL;
  size_t n = 0, start = 0;
  for (size_t i = 0; i < size; i++) {
    if (data[i] == 0) {
      argv[n++] = data + start;
      start = i + 1;
    }
  }
  if (start < size) argv[n++] = data + start;
  argv[n] = NULL;
  return argv;
}

static int run_exec(int argc, char **argv) {
  const char *user = NULL, *cwd = "", *argv_file = NULL;
  int framed = 0, home_given = 0, i = 2;
  unsetenv(SECRET_ENV);
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strncmp(argv[i], "--user=", 7) == 0) user = argv[i] + 7;
    else if (strncmp(argv[i], "--cwd=", 6) == 0) cwd = argv[i] + 6;
    else if (strncmp(argv[i], "--env=", 6) == 0) {
      putenv(argv[i] + 6);
      if (strncmp(argv[i] + 6, "HOME=", 5) == 0) home_given = 1;
    }
    else if (strcmp(argv[i], "--framed-stdin") == 0) framed = 1;
    else if (strcmp(argv[i], "--wait-tty-size") == 0) {
      /* The exec API applies a PTY's first size asynchronously: give it up to 1 s to arrive. */
      struct winsize ws;
      for (int tries = 0; tries < 200; tries++) {
        if (ioctl(0, TIOCGWINSZ, &ws) < 0 || (ws.ws_row > 0 && ws.ws_col > 0)) break;
        usleep(5000);
      }
    }
    else if (strncmp(argv[i], "--argv-file=", 12) == 0) argv_file = argv[i] + 12;
    else {
      fprintf(stderr, "corral: unknown option %s\n", argv[i]);
      return 126;
    }
  }
  char **command = argv + i;
  if (argv_file) {
    command = read_argv_file(argv_file);
    if (!command) {
      fprintf(stderr, "corral: cannot read the command from %s\n", argv_file);
      return 126;
    }
  }
  if (!command[0]) {
    fprintf(stderr, "corral: no command\n");
    return 126;
  }
  /* A `sh -c <script>` whose script is over the kernel's 128 KiB argument limit: the script goes
     to a file the shell sources (and deletes first), so $0, $1… stay what the caller gave. */
  if (command[1] && strcmp(command[1], "-c") == 0 && command[2] && strlen(command[2]) > 100 * 1024) {
    static char path[64], sourced[96];
    snprintf(path, sizeof path, "/.corral/script-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char head[96];
    int headlen = snprintf(head, sizeof head, "rm -f -- %s\n", path);
    if (fd < 0 || write_full(fd, (const unsigned char *)head, (size_t)headlen) < 0 ||
        write_full(fd, (const unsigned char *)command[2], strlen(command[2])) < 0) {
      fprintf(stderr, "corral: cannot write the script to %s: %s\n", path, strerror(errno));
      return 126;
    }
    close(fd);
    snprintf(sourced, sizeof sourced, ". %s", path);
    command[2] = sourced;
  }
  struct identity id;
  memset(&id, 0, sizeof id);
  if (user && *user) {
    char err[512];
    char *copy = strdup(user);
    if (!copy || resolve_user(copy, &id, err, sizeof err) < 0) {
      fprintf(stderr, "corral: %s\n", copy ? err : "out of memory");
      return 126;
    }
    /* The container's own HOME (root's) is replaced by the user's unless the caller gave one. */
    if (!home_given) setenv("HOME", id.home, 1);
  }
  if (framed) {
    int p[2];
    if (pipe(p) < 0) {
      fprintf(stderr, "corral: pipe: %s\n", strerror(errno));
      return 126;
    }
    pid_t relay = fork();
    if (relay < 0) {
      fprintf(stderr, "corral: fork: %s\n", strerror(errno));
      return 126;
    }
    if (relay == 0) {
      close(p[0]);
      int null_fd = open("/dev/null", O_RDWR);
      if (null_fd >= 0) {
        dup2(null_fd, 1);
        dup2(null_fd, 2);
      }
      relay_frames(p[1]);
    }
    close(p[1]);
    dup2(p[0], 0);
    close(p[0]);
  }
  if (user && *user) {
    if (setgroups(id.ngroups, id.groups) < 0 && errno != EPERM) {
      fprintf(stderr, "corral: setgroups: %s\n", strerror(errno));
      return 126;
    }
    if (setgid(id.gid) < 0 || setuid(id.uid) < 0) {
      fprintf(stderr, "corral: cannot run as %u:%u: %s\n", id.uid, id.gid, strerror(errno));
      return 126;
    }
  }
  if (cwd[0] && chdir(cwd) < 0) {
    fprintf(stderr, "corral: cannot enter %s: %s\n", cwd, strerror(errno));
    return 126;
  }
  execvp(command[0], command);
  int e = errno;
  fprintf(stderr, "corral: cannot run %s: %s\n", command[0], strerror(e));
  return e == ENOENT ? 127 : 126;
}

/* --- netdown: a sandbox without network keeps only loopback (kubernetes driver) ------------- */

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

/* Deletes every network interface of this network namespace but loopback (needs CAP_NET_ADMIN). */
static int run_netdown(void) {
  struct if_nameindex *names = if_nameindex();
  if (!names) {
    fprintf(stderr, "corral: if_nameindex: %s\n", strerror(errno));
    return 1;
  }
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (sock < 0) {
    fprintf(stderr, "corral: netlink: %s\n", strerror(errno));
    return 1;
  }
  int rc = 0;
  for (struct if_nameindex *n = names; n->if_index != 0; n++) {
    if (strcmp(n->if_name, "lo") == 0) continue;
    struct {
      struct nlmsghdr h;
      struct ifinfomsg i;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_DELLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    req.h.nlmsg_seq = n->if_index;
    req.i.ifi_family = AF_UNSPEC;
    req.i.ifi_index = (int)n->if_index;
    if (send(sock, &req, sizeof req, 0) < 0) {
      fprintf(stderr, "corral: deleting %s: %s\n", n->if_name, strerror(errno));
      rc = 1;
      continue;
    }
    char reply[4096];
    ssize_t len = recv(sock, reply, sizeof reply, 0);
    struct nlmsghdr *h = (struct nlmsghdr *)reply;
    if (len >= (ssize_t)sizeof *h && h->nlmsg_type == NLMSG_ERROR) {
      struct nlmsgerr *e = NLMSG_DATA(h);
      if (e->error != 0) {
        fprintf(stderr, "corral: deleting %s: %s\n", n->if_name, strerror(-e->error));
        rc = 1;
      }
    }
  }
  if_freenameindex(names);
  close(sock);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "init") == 0) return run_init(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "shim") == 0) return run_shim(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "netns") == 0) return run_netns(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "idmap-mount") == 0) return run_idmap_mount(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "exec") == 0) return run_exec(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "netdown") == 0) return run_netdown();
  fprintf(stderr, "usage: corral-agent init -- <command...> | corral-agent shim ...\n");
  return 2;
}
