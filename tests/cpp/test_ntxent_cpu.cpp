// The CPU NT-Xent operator, called through the dispatcher, against a direct float64
// computation of SPEC.md section 1 (loss and gradient), plus one boundary check.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what.c_str());
    ++failures;
  }
}

// loss_i and d(sum_i g_i loss_i)/dz for negatives == all, straight from the definitions.
std::pair<std::vector<double>, std::vector<double>> naive(const torch::Tensor& z, double tau,
                                                          const std::vector<double>& g) {
  const int64_t m = z.size(0), n = m / 2, d = z.size(1);
  auto a = z.accessor<double, 2>();
  auto s = [&](int64_t i, int64_t k) {
    double acc = 0;
    for (int64_t c = 0; c < d; ++c) acc += a[i][c] * a[k][c];
    return acc / tau;
  };
  std::vector<double> loss(m), grad(m * d, 0.0), lse(m);
  for (int64_t i = 0; i < m; ++i) {
    double total = 0;
    for (int64_t k = 0; k < m; ++k)
      if (k != i) total += std::exp(s(i, k));
    lse[i] = std::log(total);
    loss[i] = lse[i] - s(i, (i + n) % m);
  }
  // dL/ds_ik = g_i (P_ik - [k == p(i)]); s_ik = z_i.z_k / tau touches rows i and k.
  for (int64_t i = 0; i < m; ++i)
    for (int64_t k = 0; k < m; ++k) {
      if (k == i) continue;
      const double ds = g[i] * (std::exp(s(i, k) - lse[i]) - (k == (i + n) % m ? 1.0 : 0.0)) / tau;
      for (int64_t c = 0; c < d; ++c) {
        grad[i * d + c] += ds * a[k][c];
        grad[k * d + c] += ds * a[i][c];
      }
    }
  return {loss, grad};
}

}  // namespace

int main() {
  torch::manual_seed(0);
  auto forward = c10::Dispatcher::singleton()
                     .findSchemaOrThrow("pyclr::nt_xent_forward", "")
                     .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, int64_t,
                                                               int64_t, int64_t)>();
  auto backward = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("pyclr::nt_xent_backward", "")
                      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        double, int64_t, int64_t, int64_t)>();
  for (int64_t n : {1, 5, 70}) {
    for (int64_t d : {1, 9, 64}) {
      const double tau = 0.3;
      torch::Tensor z = torch::randn({2 * n, d}, torch::kFloat64);
      torch::Tensor g = torch::rand({2 * n}, torch::kFloat64);
      auto [loss, lse] = forward.call(z, tau, 0, 0, n);
      torch::Tensor grad = backward.call(g, z, lse, tau, 0, 0, n);
      std::vector<double> gv(g.data_ptr<double>(), g.data_ptr<double>() + 2 * n);
      auto [want_loss, want_grad] = naive(z, tau, gv);
      double loss_err = 0, grad_err = 0;
      for (int64_t i = 0; i < 2 * n; ++i)
        loss_err = std::max(loss_err, std::abs(loss[i].item<double>() - want_loss[i]));
      const double* gp = grad.data_ptr<double>();
      for (int64_t i = 0; i < 2 * n * d; ++i) grad_err = std::max(grad_err, std::abs(gp[i] - want_grad[i]));
      const std::string where = "n=" + std::to_string(n) + " d=" + std::to_string(d);
      expect(loss_err < 1e-9, "loss " + where + " error " + std::to_string(loss_err));
      expect(grad_err < 1e-9, "grad " + where + " error " + std::to_string(grad_err));
    }
  }
  bool threw = false;
  try {
    forward.call(torch::randn({5, 3}), 0.5, 0, 0, 2);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("even number of rows") != std::string::npos;
  }
  expect(threw, "odd row count is rejected with a message naming z");
  std::printf("%s\n", failures ? "ntxent_cpu: FAILED" : "ntxent_cpu: all checks passed");
  return failures ? 1 : 0;
}
