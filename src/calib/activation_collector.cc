#include "amct/calib/activation_collector.h"

#include <string>

#include "amct/calib/hfmg.h"
#include "amct/calib/ifmr.h"
#include "amct/error.h"

namespace amct {

std::unique_ptr<ActivationCollector> make_activation_collector(const ActivationQuantParams& params,
                                                               int64_t batch_num) {
  if (params.act_algo == "ifmr") return std::make_unique<IfmrCollector>(params, batch_num);
  if (params.act_algo == "hfmg") return std::make_unique<HfmgCollector>(params);
  invalid("act_algo must be \"ifmr\" or \"hfmg\", got \"" + params.act_algo + "\"");
}

}  // namespace amct
