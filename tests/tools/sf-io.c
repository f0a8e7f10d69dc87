/* sf-io: scripted file I/O for the SplitFT shim's tests: each scenario does a known
 * sequence of writes, syncs and renames, so a test run under LD_PRELOAD and strace can
 * check what reached the kernel and what the shim's statistics say.
 *
 *   sf-io small FILE N        N x (append 100 bytes, fsync)
 *   sf-io bulk FILE           write 100 KiB, fsync
 *   sf-io osync FILE N        open O_DSYNC, N x write 100 bytes (no fsync call)
 *   sf-io mmap FILE           write, map it shared and writable, write through the map, fsync
 *   sf-io sneaky FILE         write 100 bytes, then 100 more by a raw syscall, fsync
 *   sf-io fork FILE           the child appends 100 bytes and fsyncs; the parent the same after
 *   sf-io pwrite FILE N       N x (pwrite 4 KiB at a random page of a 64 KiB file, fdatasync)
 *   sf-io rename FROM TO      append + fsync FROM, rename to TO, append + fsync TO
 *   sf-io unlink FILE         append + fsync FILE, unlink it
 *   sf-io truncate FILE       append 300 + fsync, ftruncate to 100, append 50 + fsync
 *   sf-io many DIR N          N files DIR/f0.. each append 100 + fsync, all kept open, then
 *                             0.5 s for the flusher
 * Byte j of the k-th 100-byte append is 'a' + (k + j) % 26. Exit 0 when every call worked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int appended;

static void die(const char *what)
{
    fprintf(stderr, "sf-io: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int open_append(const char *path, int extra)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | extra, 0644);
    if (fd < 0)
        die(path);
    return fd;
}

static void append100(int fd)
{
    char b[100];
    for (int j = 0; j < 100; j++)
        b[j] = (char)('a' + (appended + j) % 26);
    appended++;
    if (write(fd, b, sizeof b) != (ssize_t)sizeof b)
        die("write");
}

static void sync_or_die(int fd)
{
    if (fsync(fd) != 0)
        die("fsync");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: see the comment at the top of tests/tools/sf-io.c\n");
        return 2;
    }
    const char *s = argv[1], *path = argv[2];
    int n = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 1;
    if (strcmp(s, "small") == 0) {
        int fd = open_append(path, 0);
        for (int k = 0; k < n; k++) {
            append100(fd);
            sync_or_die(fd);
        }
        close(fd);
    } else if (strcmp(s, "many") == 0) {
        int *fds = calloc((size_t)n, sizeof *fds);
        char name[4096];
        for (int k = 0; fds && k < n; k++) {
            snprintf(name, sizeof name, "%s/f%d", path, k);
            fds[k] = open_append(name, 0);
            append100(fds[k]);
            sync_or_die(fds[k]);
        }
        if (!fds)
            die("calloc");
        usleep(500000);
        for (int k = 0; k < n; k++)
            close(fds[k]);
        free(fds);
    } else if (strcmp(s, "bulk") == 0) {
        int fd = open_append(path, 0);
        char *b = calloc(1, 102400);
        if (write(fd, b, 102400) != 102400)
            die("write");
        sync_or_die(fd);
        free(b);
        close(fd);
    } else if (strcmp(s, "osync") == 0) {
        int fd = open_append(path, O_DSYNC);
        for (int k = 0; k < n; k++)
            append100(fd);
        close(fd);
    } else if (strcmp(s, "mmap") == 0) {
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ftruncate(fd, 4096) != 0)
            die("open");
        char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            die("mmap");
        memset(m, 'm', 4096);
        sync_or_die(fd);
        munmap(m, 4096);
        close(fd);
    } else if (strcmp(s, "sneaky") == 0) {
        int fd = open_append(path, 0);
        append100(fd);
        sync_or_die(fd);
        char b[100];
        memset(b, 'z', sizeof b);
        if (syscall(SYS_write, fd, b, sizeof b) != (long)sizeof b) /* not through libc */
            die("raw write");
        sync_or_die(fd);
        close(fd);
    } else if (strcmp(s, "fork") == 0) {
        int fd = open_append(path, 0);
        pid_t pid = fork();
        if (pid == 0) {
            append100(fd);
            sync_or_die(fd);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("child");
        appended++;
        append100(fd);
        sync_or_die(fd);
        close(fd);
    } else if (strcmp(s, "pwrite") == 0) {
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        char page[4096];
        if (fd < 0 || ftruncate(fd, 65536) != 0 || fsync(fd) != 0)
            die("open");
        srand(42);
        for (int k = 0; k < n; k++) {
            memset(page, 'A' + k % 26, sizeof page);
            if (pwrite(fd, page, sizeof page, (off_t)(rand() % 16) * 4096) !=
                    (ssize_t)sizeof page ||
                fdatasync(fd) != 0)
                die("pwrite");
        }
        close(fd);
    } else if (strcmp(s, "rename") == 0 && argc > 3) {
        int fd = open_append(path, 0);
        append100(fd);
        sync_or_die(fd);
        close(fd);
        if (rename(path, argv[3]) != 0)
            die("rename");
        fd = open_append(argv[3], 0);
        append100(fd);
        sync_or_die(fd);
        close(fd);
    } else if (strcmp(s, "unlink") == 0) {
        int fd = open_append(path, 0);
        append100(fd);
        sync_or_die(fd);
        close(fd);
        if (unlink(path) != 0)
            die("unlink");
    } else if (strcmp(s, "truncate") == 0) {
        int fd = open_append(path, 0);
        for (int k = 0; k < 3; k++)
            append100(fd);
        sync_or_die(fd);
        if (ftruncate(fd, 100) != 0)
            die("ftruncate");
        char b[50];
        memset(b, 't', sizeof b);
        if (write(fd, b, sizeof b) != (ssize_t)sizeof b)
            die("write");
        sync_or_die(fd);
        close(fd);
    } else {
        fprintf(stderr, "sf-io: unknown scenario '%s'\n", s);
        return 2;
    }
    return 0;
}
