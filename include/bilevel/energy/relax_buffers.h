// The checks the fused relaxation (energy/fused_relaxation.h) makes on the state and scratch buffers before it
// hands their raw pointers to a kernel: one buffer pair per state, each defined, float32, contiguous, of shape
// [batch, width of its layer], and on the device of the batch's drive. A CPU buffer with a CUDA drive would
// otherwise give a GPU kernel a host pointer (and a short buffer would be written past its end).
#pragma once

#include "bilevel/energy/layered_energy.h"

namespace bilevel {

// Throws std::invalid_argument naming the buffer (state k or its scratch), what it is and what was expected.
void check_relax_buffers(const LayeredEnergy& energy, const EnergyBatch& batch, const EnergyState& st);

}  // namespace bilevel
