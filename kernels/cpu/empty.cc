// Keeps the kernels library non-empty while kernel families are added.
namespace moegraph::cpu {
int kernels_cpu_anchor = 0;
}  // namespace moegraph::cpu
