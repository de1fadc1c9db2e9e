#include "amct/calib/kl_weight_scale.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "amct/calib/quant_math.h"

namespace amct {
namespace {

constexpr int kBins = 512;
constexpr int kWindows = 20;  // windows [i, 512 - i) for i = 0..19
constexpr double kSmoothing = 1e-4;

// Zeros get a small mass and the non-zeros give the same total up, so that
// KL stays finite; AMCT leaves the non-zeros alone when each would give up 1
// or more.
void smooth(std::vector<double>& p) {
  const auto zeros = static_cast<double>(std::count(p.begin(), p.end(), 0.0));
  const double nonzeros = static_cast<double>(p.size()) - zeros;
  const double shift = nonzeros > 0 ? kSmoothing * zeros / nonzeros : 0.0;
  for (double& v : p) {
    if (v == 0.0)
      v = kSmoothing;
    else if (shift < 1.0)
      v -= shift;
  }
}

double kl_divergence(std::vector<double> p, std::vector<double> q) {
  smooth(p);
  smooth(q);
  double sp = 0, sq = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    sp += p[i];
    sq += q[i];
  }
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double a = p[i] / sp;
    kl += a * std::log(a / (q[i] / sq));
  }
  return kl;
}

// The window's histogram merged into `levels` bins (index ranges with
// ceil-based edges) and expanded back, each merged mass spread evenly over
// the window's non-zero bins.
std::vector<double> quantized_window(const std::vector<double>& p, int levels) {
  const auto n = static_cast<int64_t>(p.size());
  std::vector<double> q(p.size(), 0.0);
  for (int64_t j = 0; j < levels; ++j) {
    const auto start = static_cast<int64_t>(std::ceil(static_cast<double>(j) * n / levels));
    const auto stop = std::min(n, static_cast<int64_t>(std::ceil(static_cast<double>(j + 1) * n / levels)));
    double mass = 0;
    int64_t nonzero = 0;
    for (int64_t k = start; k < stop; ++k) {
      mass += p[k];
      nonzero += p[k] != 0.0;
    }
    if (nonzero == 0) continue;
    for (int64_t k = start; k < stop; ++k)
      if (p[k] != 0.0) q[k] = mass / static_cast<double>(nonzero);
  }
  return q;
}

}  // namespace

float kl_weight_scale(std::span<const float> values, int num_bits) {
  check_num_bits(num_bits);
  float max_abs = 0.0f;
  for (float v : values) max_abs = std::max(max_abs, std::fabs(v));
  if (!(max_abs > 0.0f) || !std::isfinite(max_abs)) return process_scale(max_abs);
  // torch.histc over [-max|W|, max|W|]: the top edge falls in the last bin.
  std::vector<double> hist(kBins, 0.0);
  const double lo = -static_cast<double>(max_abs);
  const double width = 2.0 * max_abs / kBins;
  for (float v : values) {
    const auto bin = static_cast<int64_t>((static_cast<double>(v) - lo) / width);
    hist[static_cast<size_t>(std::clamp<int64_t>(bin, 0, kBins - 1))] += 1.0;
  }
  const int levels = static_cast<int>(quant_max(num_bits) - quant_min(num_bits));
  int best = 0;
  double best_kl = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kWindows; ++i) {
    std::vector<double> p(hist.begin() + i, hist.end() - i);
    for (int k = 0; k < i; ++k) {
      p.front() += hist[static_cast<size_t>(k)];
      p.back() += hist[static_cast<size_t>(kBins - 1 - k)];
    }
    const double kl = kl_divergence(p, quantized_window(p, levels));
    if (kl < best_kl) {
      best_kl = kl;
      best = i;
    }
  }
  const double clip = static_cast<double>(max_abs) * (1.0 - 2.0 * best / kBins);
  return process_scale(static_cast<float>(clip / static_cast<double>(-quant_min(num_bits))));
}

std::vector<float> kl_weight_scales(std::span<const float> weight, const ChannelMap& channels, bool channel_wise,
                                    int num_bits) {
  if (!channel_wise) return {kl_weight_scale(weight, num_bits)};
  std::vector<std::vector<float>> groups(static_cast<size_t>(channels.channels()));
  for (size_t i = 0; i < weight.size(); ++i)
    groups[static_cast<size_t>(channels.channel_of(static_cast<int64_t>(i)))].push_back(weight[i]);
  std::vector<float> scales;
  for (const auto& g : groups) scales.push_back(kl_weight_scale(g, num_bits));
  return scales;
}

}  // namespace amct
