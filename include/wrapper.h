/* What bindgen reads: spank.h does not compile on its own, it needs the fixed-width
 * integer types and, for SPANK_OPTIONS_TABLE_END, NULL. */
#include <stdint.h>
#include <stddef.h>
#include <slurm/slurm_version.h>
#include <slurm/spank.h>
