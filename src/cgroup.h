/* What a box's cgroup says it used, read from the host's cgroup files
 * (lockup.meter). The box cannot write them: they are the kernel's count of
 * every process in the container. Sans-IO: these parse what the files hold;
 * l_cgroup.c reads them. */
#ifndef LK_CGROUP_H
#define LK_CGROUP_H

#include <stddef.h>
#include <stdint.h>

/* One non-negative decimal integer, as cgroup v1's cpuacct.usage_user,
 * memory.max_usage_in_bytes and v2's memory.peak hold it, optionally followed
 * by a newline. 0 with *v set, or -1 (anything else: empty, a sign, other
 * bytes, a value past 2^64 - 1). */
int lk_cg_u64(const char *buf, size_t len, uint64_t *v);

/* cgroup v2's cpu.stat ("key value" lines): the values of user_usec and
 * system_usec. 0 when both were found, well formed, once each; -1 otherwise. */
int lk_cg_cpu_stat(const char *buf, size_t len, uint64_t *user_usec, uint64_t *system_usec);

#endif
