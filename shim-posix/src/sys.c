/* sys.c: resolving the real functions behind libsplitft's wrappers (the list is in sys.h). */
#include "sys.h"

#include <dlfcn.h>
#include <pthread.h>

sf_sys sf_real;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool ok;

static void resolve(void)
{
    ok = true;
#define SF_SYS_LOOK(ret, name, params, required)                                                   \
    sf_real.name = (__typeof__(sf_real.name))dlsym(RTLD_NEXT, #name);                              \
    if ((required) && !sf_real.name)                                                               \
        ok = false;
    SF_SYS_CALLS(SF_SYS_LOOK)
#undef SF_SYS_LOOK
}

bool sf_sys_init(void)
{
    pthread_once(&once, resolve);
    return ok;
}
