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

/* A "key value" file, as v1's cpuacct.stat ("user" and "system", in
 * USER_HZ ticks) and v2's cpu.stat ("user_usec" and "system_usec") are: the
 * values of keys a and b (other keys are skipped). 0 when both were found,
 * well formed, once each, and every line is "key SP digits"; -1 otherwise. */
int lk_cg_pair(const char *buf, size_t len, const char *a, const char *b, uint64_t *va, uint64_t *vb);

#endif
