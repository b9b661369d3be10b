// Stand-in for the sanitizer symbolizer hooks libFuzzer looks up (weak
// symbols): "symbolizes" a PC as its offset in its module, so that
// -print_coverage works on a -s none build; edges_per_file.py symbolizes the offsets.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
void __sanitizer_symbolize_pc(void *pc, const char *fmt, char *out, size_t n) {
  Dl_info i; unsigned long off = (unsigned long)pc;
  if (dladdr(pc, &i) && i.dli_fbase) off -= (unsigned long)i.dli_fbase;
  snprintf(out, n, "0x%lx", off);
}
int __sanitizer_get_module_and_offset_for_pc(void *pc, char *name, size_t n, void **off) {
  Dl_info i;
  if (!dladdr(pc, &i)) return 0;
  if (name && n) { strncpy(name, i.dli_fname ? i.dli_fname : "?", n - 1); name[n - 1] = 0; }
  if (off) *off = (void *)((char *)pc - (char *)i.dli_fbase);
  return 1;
}
