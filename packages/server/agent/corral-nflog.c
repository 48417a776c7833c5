/*
 * corral-nflog: receives the packets netfilter logs to one NFLOG group (nftables `log group <G>`,
 * iptables `-j NFLOG --nflog-group <G>`) and prints one line per packet on stdout. The server runs
 * it as a child process (runtime/egress/nflog-reader.ts); it needs CAP_NET_ADMIN and nothing but libc.
 *
 *   corral-nflog [--netns=<network namespace file>] [--buffer=<bytes>] <group>
 *
 * It binds <group> over a NETLINK_NETFILTER socket (in the network namespace of the file when
 * given, else its own), asks for the first COPY_RANGE bytes of each packet, and prints:
 *
 *   R <group>                                         once the group is bound (ready)
 *   P <ms since epoch> <protocol> <src> <dst> <dport or -> <prefix>   one logged packet
 *   D <records dropped> <kernel overruns>             totals, whenever either grew
 *
 * Fields are separated by one tab; the prefix comes last and has every byte outside printable
 * ASCII replaced by '?', so a line never holds a tab or newline it did not put there. <protocol> is
 * tcp, udp, icmp, icmpv6, sctp, udplite, gre, esp, ah or the IP protocol number; <dport> is the
 * destination port of tcp, udp, sctp and udplite packets that carry their transport header.
 *
 * Back-pressure: stdout is non-blocking. Lines wait in a buffer of --buffer bytes (default 1 MiB)
 * while the reader is slow; a record that does not fit is dropped and counted ("records dropped").
 * When the kernel could not queue log messages to the socket (ENOBUFS), that is counted as an
 * overrun (the kernel does not say how many packets were lost).
 *
 * It never binds a protocol family to nfnetlink_log (NFULNL_CFG_CMD_PF_BIND): `log group` rules
 * reach the group without it, and a family binding would redirect the host's plain `log` rules.
 *
 * It exits 0 when stdin reaches end-of-file or stdout is closed (the server went away; it also
 * asks for SIGTERM when its parent dies), 3 when the group is already bound by another socket (a
 * group has one reader per network namespace), 2 on a usage error and 1 on any other failure,
 * with the reason on stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_GROUP_BUSY 3
/* Bytes of each packet the kernel copies: an IPv6 header, a few extension headers and the ports. */
#define COPY_RANGE 160
/* Log messages the kernel batches before it sends them, and the longest it holds one (1/100 s). */
#define QUEUE_THRESHOLD 32
#define FLUSH_TIMEOUT 5
#define RECEIVE_BUFFER (4 << 20)
#define LINE_MAX_BYTES 512

static char *out;
static size_t out_len, out_cap;
static unsigned long long dropped, overruns, reported_dropped, reported_overruns;
static uint32_t sequence;

static void die(const char *what) {
  fprintf(stderr, "corral-nflog: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Appends a line to the output buffer; false (and nothing appended) when it does not fit. */
static int append(const char *line, size_t len) {
  if (out_len + len > out_cap) return 0;
  memcpy(out + out_len, line, len);
  out_len += len;
  return 1;
}

/* Writes what stdout takes now; exits when the reader is gone. */
static void flush_out(void) {
  while (out_len > 0) {
    ssize_t n = write(STDOUT_FILENO, out, out_len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      exit(0); /* EPIPE and the like: nobody reads any more */
    }
    memmove(out, out + n, out_len - (size_t)n);
    out_len -= (size_t)n;
  }
}

/* Appends the drop totals when they grew since the last report and there is room for them. */
static void report_drops(void) {
  if (dropped == reported_dropped && overruns == reported_overruns) return;
  char line[64];
  int len = snprintf(line, sizeof line, "D\t%llu\t%llu\n", dropped, overruns);
  if (append(line, (size_t)len)) {
    reported_dropped = dropped;
    reported_overruns = overruns;
  }
}

static const char *protocol_name(int protocol, char *scratch, size_t size) {
  switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "icmpv6";
    case IPPROTO_SCTP: return "sctp";
    case IPPROTO_UDPLITE: return "udplite";
    case IPPROTO_GRE: return "gre";
    case IPPROTO_ESP: return "esp";
    case IPPROTO_AH: return "ah";
    default: snprintf(scratch, size, "%d", protocol); return scratch;
  }
}

static int has_ports(int protocol) {
  return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP || protocol == IPPROTO_UDPLITE;
}

/*
 * Reads addresses, protocol and destination port from the network header at `p`. Returns 0 when
 * it is not an IPv4 or IPv6 packet; *dport is -1 when the packet carries no port (another
 * protocol, a non-first fragment, or a header cut by the copy range).
 */
static int parse_packet(const unsigned char *p, size_t len, char *src, char *dst, int *protocol, int *dport) {
  size_t l4 = 0;
  int transport_present = 0;
  *dport = -1;
  if (len >= 20 && (p[0] >> 4) == 4) {
    size_t header = (size_t)(p[0] & 0x0f) * 4;
    if (header < 20 || header > len) return 0;
    *protocol = p[9];
    inet_ntop(AF_INET, p + 12, src, INET6_ADDRSTRLEN);
    inet_ntop(AF_INET, p + 16, dst, INET6_ADDRSTRLEN);
    uint16_t fragment = (uint16_t)((p[6] << 8) | p[7]);
    transport_present = (fragment & 0x1fff) == 0;
    l4 = header;
  } else if (len >= 40 && (p[0] >> 4) == 6) {
    inet_ntop(AF_INET6, p + 8, src, INET6_ADDRSTRLEN);
    inet_ntop(AF_INET6, p + 24, dst, INET6_ADDRSTRLEN);
    int next = p[6];
    size_t offset = 40;
    transport_present = 1;
    /* Walk the extension headers (hop-by-hop, routing, destination options, fragment, AH). */
    for (int i = 0; i < 8 && transport_present; i++) {
      if (next == 0 || next == 43 || next == 60 || next == 51) {
        if (offset + 2 > len) { transport_present = 0; break; }
        size_t size = next == 51 ? ((size_t)p[offset + 1] + 2) * 4 : ((size_t)p[offset + 1] + 1) * 8;
        next = p[offset];
        offset += size;
      } else if (next == 44) {
        if (offset + 8 > len) { transport_present = 0; break; }
        uint16_t fragment = (uint16_t)((p[offset + 2] << 8) | p[offset + 3]);
        next = p[offset];
        offset += 8;
        if ((fragment & 0xfff8) != 0) transport_present = 0;
      } else {
        break;
      }
    }
    *protocol = next;
    l4 = offset;
  } else {
    return 0;
  }
  if (transport_present && has_ports(*protocol) && l4 + 4 <= len) *dport = (p[l4 + 2] << 8) | p[l4 + 3];
  return 1;
}

/* Turns one NFULNL_MSG_PACKET message into a `P` line. */
static void handle_packet(const struct nlmsghdr *message) {
  const char *prefix = "";
  const unsigned char *payload = NULL;
  size_t payload_len = 0;
  unsigned long long at_ms = 0;
  size_t header = NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct nfgenmsg)));
  if (message->nlmsg_len < header) return;
  const char *cursor = (const char *)message + header;
  size_t remaining = message->nlmsg_len - header;
  while (remaining >= NLA_HDRLEN) {
    const struct nlattr *attribute = (const struct nlattr *)cursor;
    if (attribute->nla_len < NLA_HDRLEN || attribute->nla_len > remaining) break;
    const char *data = cursor + NLA_HDRLEN;
    size_t data_len = attribute->nla_len - NLA_HDRLEN;
    switch (attribute->nla_type & NLA_TYPE_MASK) {
      case NFULA_PREFIX:
        if (data_len > 0 && memchr(data, 0, data_len) != NULL) prefix = data;
        break;
      case NFULA_PAYLOAD:
        payload = (const unsigned char *)data;
        payload_len = data_len;
        break;
      case NFULA_TIMESTAMP:
        if (data_len >= sizeof(struct nfulnl_msg_packet_timestamp)) {
          struct nfulnl_msg_packet_timestamp stamp;
          memcpy(&stamp, data, sizeof stamp);
          at_ms = be64toh(stamp.sec) * 1000ULL + be64toh(stamp.usec) / 1000ULL;
        }
        break;
    }
    size_t step = NLA_ALIGN(attribute->nla_len);
    if (step >= remaining) break;
    cursor += step;
    remaining -= step;
  }
  if (payload == NULL) return;
  char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], scratch[8], port[8];
  int protocol, dport;
  if (!parse_packet(payload, payload_len, src, dst, &protocol, &dport)) return;
  if (at_ms == 0) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    at_ms = (unsigned long long)now.tv_sec * 1000ULL + (unsigned long long)now.tv_nsec / 1000000ULL;
  }
  if (dport < 0) strcpy(port, "-");
  else snprintf(port, sizeof port, "%d", dport);
  char clean[256];
  size_t i = 0;
  for (; prefix[i] != 0 && i < sizeof clean - 1; i++) clean[i] = (prefix[i] >= 0x20 && prefix[i] < 0x7f) ? prefix[i] : '?';
  clean[i] = 0;
  char line[LINE_MAX_BYTES];
  int len = snprintf(line, sizeof line, "P\t%llu\t%s\t%s\t%s\t%s\t%s\n", at_ms, protocol_name(protocol, scratch, sizeof scratch), src, dst, port, clean);
  if (len <= 0 || (size_t)len >= sizeof line || !append(line, (size_t)len)) dropped++;
}

/*
 * Handles every message in one datagram: packets become lines; returns the errno of the
 * NLMSG_ERROR that acknowledges request `awaited` (0: success), or -1 when it holds none.
 */
static int handle_datagram(const char *buffer, size_t len, uint32_t awaited) {
  int result = -1;
  for (const struct nlmsghdr *message = (const struct nlmsghdr *)buffer; NLMSG_OK(message, len); message = NLMSG_NEXT(message, len)) {
    if (message->nlmsg_type == NLMSG_ERROR) {
      if (message->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) continue;
      const struct nlmsgerr *error = NLMSG_DATA(message);
      if (awaited != 0 && error->msg.nlmsg_seq == awaited) result = -error->error;
    } else if (message->nlmsg_type == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) {
      handle_packet(message);
    }
  }
  return result;
}

/* Sends one NFULNL_MSG_CONFIG with one attribute for `group` and returns the kernel's errno (0: done). */
static int configure(int fd, uint16_t group, uint16_t type, const void *value, size_t value_len) {
  char request[NLMSG_SPACE(sizeof(struct nfgenmsg)) + NLA_HDRLEN + 16];
  memset(request, 0, sizeof request);
  struct nlmsghdr *message = (struct nlmsghdr *)request;
  message->nlmsg_len = NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct nfgenmsg))) + NLA_ALIGN(NLA_HDRLEN + value_len);
  message->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  message->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  message->nlmsg_seq = ++sequence;
  struct nfgenmsg *generic = NLMSG_DATA(message);
  generic->nfgen_family = AF_UNSPEC;
  generic->version = NFNETLINK_V0;
  generic->res_id = htons(group);
  struct nlattr *attribute = (struct nlattr *)(request + NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct nfgenmsg))));
  attribute->nla_len = (uint16_t)(NLA_HDRLEN + value_len);
  attribute->nla_type = type;
  memcpy((char *)attribute + NLA_HDRLEN, value, value_len);
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  if (sendto(fd, request, message->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return errno;
  char buffer[65536];
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += 5;
  for (;;) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long wait_ms = (deadline.tv_sec - now.tv_sec) * 1000 + (deadline.tv_nsec - now.tv_nsec) / 1000000;
    if (wait_ms <= 0) return ETIMEDOUT;
    struct pollfd ready = { .fd = fd, .events = POLLIN };
    if (poll(&ready, 1, (int)wait_ms) < 0 && errno != EINTR) return errno;
    ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ENOBUFS) { overruns++; continue; }
      return errno;
    }
    int result = handle_datagram(buffer, (size_t)n, message->nlmsg_seq);
    if (result != -1) return result;
  }
}

/* The netlink port holding `group` in this network namespace (/proc/net/netfilter/nfnetlink_log), or -1. */
static long group_holder(unsigned group) {
  FILE *file = fopen("/proc/net/netfilter/nfnetlink_log", "re");
  if (file == NULL) return -1;
  unsigned listed, port;
  long holder = -1;
  char rest[256];
  while (fscanf(file, "%u %u", &listed, &port) == 2) {
    if (listed == group) { holder = port; break; }
    if (fgets(rest, sizeof rest, file) == NULL) break;
  }
  fclose(file);
  return holder;
}

static unsigned long parse_number(const char *text, unsigned long max, const char *what) {
  char *end;
  errno = 0;
  unsigned long value = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != 0 || value > max || text[0] == '-') {
    fprintf(stderr, "corral-nflog: %s must be a number from 0 to %lu, got \"%s\"\n", what, max, text);
    exit(EXIT_USAGE);
  }
  return value;
}

int main(int argc, char **argv) {
  const char *netns = NULL;
  const char *group_text = NULL;
  out_cap = 1 << 20;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--netns=", 8) == 0) netns = argv[i] + 8;
    else if (strncmp(argv[i], "--buffer=", 9) == 0) out_cap = parse_number(argv[i] + 9, 1UL << 30, "--buffer");
    else if (group_text == NULL && argv[i][0] != '-') group_text = argv[i];
    else group_text = NULL, i = argc;
  }
  if (group_text == NULL) {
    fprintf(stderr, "usage: corral-nflog [--netns=<network namespace file>] [--buffer=<bytes>] <group>\n");
    return EXIT_USAGE;
  }
  uint16_t group = (uint16_t)parse_number(group_text, 65535, "the NFLOG group");
  if (out_cap < 4096) out_cap = 4096;
  out = malloc(out_cap);
  if (out == NULL) die("malloc");

  /*
   * End with the server: on its death, and when it closes our stdin or stdout. (A parent that died
   * before this prctl has closed the stdin pipe already, so the loop below sees end-of-file.)
   */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGPIPE, SIG_IGN);

  if (netns != NULL) {
    int ns = open(netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0) die(netns);
    if (setns(ns, CLONE_NEWNET) < 0) die("setns");
    close(ns);
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) die("socket(NETLINK_NETFILTER)");
  struct sockaddr_nl local = { .nl_family = AF_NETLINK };
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
  int size = RECEIVE_BUFFER;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);

  struct nfulnl_msg_config_cmd bind_command = { .command = NFULNL_CFG_CMD_BIND };
  int error = configure(fd, group, NFULA_CFG_CMD, &bind_command, sizeof bind_command);
  if (error == EBUSY || error == EPERM) {
    long holder = group_holder(group);
    if (holder >= 0) {
      fprintf(stderr,
              "corral-nflog: NFLOG group %u is already bound by another process (netlink port %ld, usually its pid) in this network namespace; "
              "a group has one reader: is another Corral server running on this host? Give each server its own CORRAL_EGRESS_NFLOG_GROUP\n",
              group, holder);
      return EXIT_GROUP_BUSY;
    }
  }
  if (error != 0) {
    errno = error;
    die(error == EPERM ? "binding the NFLOG group (needs CAP_NET_ADMIN)" : "binding the NFLOG group");
  }
  struct nfulnl_msg_config_mode mode = { .copy_range = htonl(COPY_RANGE), .copy_mode = NFULNL_COPY_PACKET };
  if ((errno = configure(fd, group, NFULA_CFG_MODE, &mode, sizeof mode)) != 0) die("setting the copy mode");
  uint32_t threshold = htonl(QUEUE_THRESHOLD), timeout = htonl(FLUSH_TIMEOUT);
  if ((errno = configure(fd, group, NFULA_CFG_QTHRESH, &threshold, sizeof threshold)) != 0) die("setting the queue threshold");
  if ((errno = configure(fd, group, NFULA_CFG_TIMEOUT, &timeout, sizeof timeout)) != 0) die("setting the flush timeout");

  char ready[32];
  int ready_len = snprintf(ready, sizeof ready, "R\t%u\n", group);
  append(ready, (size_t)ready_len);
  int flags = fcntl(STDOUT_FILENO, F_GETFL);
  if (flags < 0 || fcntl(STDOUT_FILENO, F_SETFL, flags | O_NONBLOCK) < 0) die("fcntl(stdout)");
  flush_out();

  static char buffer[1 << 17];
  for (;;) {
    report_drops();
    struct pollfd fds[3] = {
      { .fd = fd, .events = POLLIN },
      { .fd = STDIN_FILENO, .events = POLLIN },
      { .fd = STDOUT_FILENO, .events = out_len > 0 ? POLLOUT : 0 },
    };
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char discard[256];
      ssize_t n = read(STDIN_FILENO, discard, sizeof discard);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return 0;
    }
    if (fds[2].revents & (POLLERR | POLLHUP)) return 0;
    if (fds[0].revents & POLLIN) {
      for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n < 0) {
          if (errno == ENOBUFS) { overruns++; continue; }
          if (errno == EAGAIN || errno == EINTR) break;
          die("recv");
        }
        handle_datagram(buffer, (size_t)n, 0);
      }
    }
    report_drops();
    flush_out();
  }
}
