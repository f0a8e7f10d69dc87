/* fuzz_orion_pdb.c: libFuzzer target for Orion's profile-database reader and its Nsight
 * Compute CSV reader (both read files users bring). Besides "no crash, no sanitizer report":
 * a refusal says why; every accepted entry has a valid class, a duration >= 0 or -1, and
 * dimensions that are all given or all "any"; and what the database reader accepted is
 * found again by its own lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_orion_pdb: %s\n", what);
        abort();
    }
}

static void check_entries(orion_pdb *db)
{
    for (size_t i = 0; i < db->n; i++) {
        const orion_pentry *e = &db->e[i];
        require(e->profile >= ORION_UNKNOWN && e->profile <= ORION_MEMORY, "bad class");
        require(e->dur_us >= 0 || e->dur_us == -1, "bad duration");
        require((e->grid[0] == 0) == (e->grid[1] == 0 && e->grid[2] == 0) || e->grid[0] != 0,
                "half-given grid");
        require(orion_pdb_find(db, e->name, e->grid, e->block) != NULL, "entry not found back");
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    orion_pdb db = {0};
    rt_err err = {0};
    if (orion_pdb_parse(&db, (const char *)data, size, "fuzz", &err) != 0)
        require(err.msg[0] != '\0', "database refusal without a message");
    else
        check_entries(&db);
    orion_pdb_free(&db);
    memset(&err, 0, sizeof err);
    int n = orion_pdb_from_ncu(&db, (const char *)data, size, 10.0, &err);
    if (n < 0)
        require(err.msg[0] != '\0', "ncu refusal without a message");
    else
        check_entries(&db);
    orion_pdb_free(&db);
    return 0;
}
