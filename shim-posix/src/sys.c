/* sys.c: resolving the real functions behind libsplitft's wrappers. */
#include "sys.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

sf_sys sf_real;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool ok;

#define LOOK(field, name) (sf_real.field = (__typeof__(sf_real.field))dlsym(RTLD_NEXT, name))

static void resolve(void)
{
    LOOK(open, "open");
    LOOK(open64, "open64");
    LOOK(openat, "openat");
    LOOK(openat64, "openat64");
    LOOK(creat, "creat");
    LOOK(creat64, "creat64");
    LOOK(open_2, "__open_2");
    LOOK(open64_2, "__open64_2");
    LOOK(openat_2, "__openat_2");
    LOOK(openat64_2, "__openat64_2");
    LOOK(write, "write");
    LOOK(pwrite, "pwrite");
    LOOK(pwrite64, "pwrite64");
    LOOK(writev, "writev");
    LOOK(pwritev, "pwritev");
    LOOK(pwritev64, "pwritev64");
    LOOK(pwritev2, "pwritev2");
    LOOK(pwritev64v2, "pwritev64v2");
    LOOK(fsync, "fsync");
    LOOK(fdatasync, "fdatasync");
    LOOK(sync_file_range, "sync_file_range");
    LOOK(msync, "msync");
    LOOK(syncfs, "syncfs");
    LOOK(close, "close");
    LOOK(dup, "dup");
    LOOK(dup2, "dup2");
    LOOK(dup3, "dup3");
    LOOK(fcntl, "fcntl");
    LOOK(fcntl64, "fcntl64");
    LOOK(rename, "rename");
    LOOK(renameat, "renameat");
    LOOK(renameat2, "renameat2");
    LOOK(unlink, "unlink");
    LOOK(unlinkat, "unlinkat");
    LOOK(truncate, "truncate");
    LOOK(truncate64, "truncate64");
    LOOK(ftruncate, "ftruncate");
    LOOK(ftruncate64, "ftruncate64");
    LOOK(fallocate, "fallocate");
    LOOK(fallocate64, "fallocate64");
    LOOK(posix_fallocate, "posix_fallocate");
    LOOK(posix_fallocate64, "posix_fallocate64");
    LOOK(mmap, "mmap");
    LOOK(mmap64, "mmap64");
    /* The calls every path relies on; the others are wrapped only when libc has them. */
    ok = sf_real.open && sf_real.openat && sf_real.write && sf_real.pwrite && sf_real.writev &&
         sf_real.fsync && sf_real.fdatasync && sf_real.close && sf_real.dup && sf_real.dup2 &&
         sf_real.fcntl && sf_real.rename && sf_real.renameat && sf_real.unlink &&
         sf_real.unlinkat && sf_real.truncate && sf_real.ftruncate && sf_real.mmap;
}

bool sf_sys_init(void)
{
    pthread_once(&once, resolve);
    return ok;
}
