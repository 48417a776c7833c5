/*
 * corral-seccomp: compiles a seccomp profile into a classic BPF program with libseccomp, once, so
 * sandboxes load the compiled filter (corral-agent `init --seccomp-fd`) instead of having the OCI
 * runtime compile the same profile again at every start.
 *
 * Reads the profile from stdin in a line format that seccomp-bpf.ts writes from an OCI profile:
 *   default <errno>
 *   arch <x86_64|x86|x32|aarch64|arm>
 *   rule <allow|errno> <errno> <syscall name> <arg count> [<index> <eq|ne|lt|le|gt|ge|masked_eq> <value> <value two>]...
 * and writes the BPF program (an array of struct sock_filter) to stdout. A rule naming a syscall
 * this libseccomp does not know, or that it cannot express for an architecture, is skipped, as
 * runc and crun do: every rule either allows something or picks the errno of a denial, so a
 * skipped rule can only make the filter stricter. Prints how many rules it skipped to stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_op(const char *op, enum scmp_compare *out) {
  static const struct {
    const char *name;
    enum scmp_compare op;
  } ops[] = {{"eq", SCMP_CMP_EQ}, {"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE},
             {"gt", SCMP_CMP_GT}, {"ge", SCMP_CMP_GE}, {"masked_eq", SCMP_CMP_MASKED_EQ}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    if (strcmp(op, ops[i].name) == 0) {
      *out = ops[i].op;
      return 0;
    }
  }
  return -1;
}

int main(void) {
  char word[64];
  unsigned errno_default;
  if (scanf("%63s %u", word, &errno_default) != 2 || strcmp(word, "default") != 0) {
    fprintf(stderr, "corral-seccomp: expected 'default <errno>'\n");
    return 2;
  }
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(errno_default));
  if (!ctx) {
    fprintf(stderr, "corral-seccomp: seccomp_init failed\n");
    return 1;
  }
  int skipped = 0, rules = 0;
  while (scanf("%63s", word) == 1) {
    if (strcmp(word, "arch") == 0) {
      char name[32];
      if (scanf("%31s", name) != 1) return 2;
      uint32_t arch = seccomp_arch_resolve_name(name);
      if (arch == 0) {
        fprintf(stderr, "corral-seccomp: unknown architecture %s\n", name);
        return 2;
      }
      int rc = seccomp_arch_add(ctx, arch);
      if (rc < 0 && rc != -EEXIST) {
        fprintf(stderr, "corral-seccomp: adding architecture %s: %s\n", name, strerror(-rc));
        return 1;
      }
    } else if (strcmp(word, "rule") == 0) {
      char action[16], name[64];
      unsigned errno_ret, nargs;
      if (scanf("%15s %u %63s %u", action, &errno_ret, name, &nargs) != 4 || nargs > 6) {
        fprintf(stderr, "corral-seccomp: malformed rule\n");
        return 2;
      }
      struct scmp_arg_cmp args[6];
      for (unsigned i = 0; i < nargs; i++) {
        char op[16];
        unsigned index;
        unsigned long long value, value_two;
        if (scanf("%u %15s %llu %llu", &index, op, &value, &value_two) != 4 || parse_op(op, &args[i].op) < 0 || index > 5) {
          fprintf(stderr, "corral-seccomp: malformed argument of %s\n", name);
          return 2;
        }
        args[i].arg = index;
        args[i].datum_a = value;
        args[i].datum_b = value_two;
      }
      uint32_t act;
      if (strcmp(action, "allow") == 0) act = SCMP_ACT_ALLOW;
      else if (strcmp(action, "errno") == 0) act = SCMP_ACT_ERRNO(errno_ret);
      else {
        fprintf(stderr, "corral-seccomp: unknown action %s\n", action);
        return 2;
      }
      rules++;
      int nr = seccomp_syscall_resolve_name(name);
      if (nr == __NR_SCMP_ERROR || seccomp_rule_add_array(ctx, act, nr, nargs, args) < 0) skipped++;
    } else {
      fprintf(stderr, "corral-seccomp: unknown directive %s\n", word);
      return 2;
    }
  }
  int rc = seccomp_export_bpf(ctx, 1);
  if (rc < 0) {
    fprintf(stderr, "corral-seccomp: export: %s\n", strerror(-rc));
    return 1;
  }
  fprintf(stderr, "corral-seccomp: %d rules, %d skipped\n", rules, skipped);
  seccomp_release(ctx);
  return 0;
}
