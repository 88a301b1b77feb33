// Facts about this process and machine, for reports and benchmarks.
#pragma once

namespace diffuse {

// Peak resident set size (VmHWM) of this process in MiB; -1 where /proc is unavailable.
double peak_rss_mib();

}  // namespace diffuse
