// The smallest program against an installed libtequila: d/dw sum(w * w) at w = 3 is 6.
#include <cstdio>

#include <tequila/autograd/ops.h>

int main() {
  using namespace tq::autograd;
  Var w = Var::parameter(tq::Tensor::full({1}, 3.0), "w");
  Tape tape;
  RecordScope rec(tape);
  tape.backward(sum(mul(w, w)));
  std::printf("grad %g\n", w.grad().item());
  return 0;
}
