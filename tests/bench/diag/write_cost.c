/* What one journal-sized `write` costs on the disk under DIR (default: the
 * current directory): 200,000 `pwrite`s of 900 bytes (about one audit
 * journal record) over zeros already written and synced (what the journal
 * does), then appending to an empty file, then to /dev/null (the syscall
 * alone). Prints the mean of each in microseconds. A tool, not a test.
 *
 *     gcc -O2 -o /tmp/write_cost tests/bench/diag/write_cost.c && /tmp/write_cost [DIR]
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { RECORD = 900, ROUNDS = 200000 };

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static double mean_us(int fd, const char *buf, int same_offset) {
  double start = now_ns();
  for (int i = 0; i < ROUNDS; i++) {
    off_t at = same_offset ? 0 : (off_t)i * RECORD;
    if (pwrite(fd, buf, RECORD, at) != RECORD) {
      perror("pwrite");
      return -1;
    }
  }
  return (now_ns() - start) / ROUNDS / 1000;
}

int main(int argc, char **argv) {
  static char zeros[1 << 20];
  char buf[RECORD], path[4096];
  memset(buf, 'x', sizeof buf);
  snprintf(path, sizeof path, "%s/hoop-write-cost-%d.bin", argc > 1 ? argv[1] : ".", getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    perror(path);
    return 1;
  }
  for (int i = 0; i < (int)((long)ROUNDS * RECORD / sizeof zeros) + 1; i++) {
    if (write(fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros) {
      perror("write");
      unlink(path);
      return 1;
    }
  }
  fsync(fd);
  double over = mean_us(fd, buf, 0);
  if (ftruncate(fd, 0) != 0) perror("ftruncate");
  double append = mean_us(fd, buf, 0);
  close(fd);
  unlink(path);
  int null = open("/dev/null", O_WRONLY);
  double syscall = null < 0 ? -1 : mean_us(null, buf, 1);
  printf("over zeros %.2f us, appending %.2f us, /dev/null %.2f us\n", over, append, syscall);
  return 0;
}
