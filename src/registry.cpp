// The registries' generation counter, and their part of the config schema (config/schema.h, SchemaExtension): the
// config layer includes no registry, so the registries add their components to Schema::global() from here.
#include "bilevel/registry.h"

namespace bilevel {
namespace {

uint64_t generation = 0;

// Each selector key's choices are the names its registry holds (the registries in the order the schema's keys
// first used them); the rules and inner solvers are groups; every quantization solver's keys live under
// quantization.NAME (more than one can be in use, for the weights and the activations, so they are not a selected
// group), every data set's under data.NAME (the built-in synthetic's: data.synthetic.*).
void add_registered_components(Schema& s) {
  s.add_registered_choices("data.name", data_sets().names());
  s.add_registered_choices("model.activation", activations().names());
  s.add_registered_choices("rule.name", rules().names());
  s.add_registered_choices("solver.name", inner_solvers().names());
  s.add_registered_choices("train.loss", objectives().names());
  s.add_registered_choices("train.probe_reference", rules().names());
  s.add_registered_choices("quantization.weights.quantizer", quantizers().names());
  s.add_registered_choices("quantization.weights.solver", weight_solvers().names());
  s.add_group(ConfigGroup{"rule", "rule", rules().infos()});
  s.add_group(ConfigGroup{"solver", "inner solver", inner_solvers().infos()});
  for (const auto& c : weight_solvers().infos()) s.add_component_keys(c, "quantization." + c.name);
  for (const auto& c : data_sets().infos()) s.add_component_keys(c, "data." + c.name);
}

// Installed before main runs (and before any plugin is loaded). The registries themselves are created, and their
// built-ins registered, only when the schema is first built (or a registry first used), not here.
[[maybe_unused]] const bool schema_extension_installed =
    (set_schema_extension({&registry_generation, &add_registered_components}), true);

}  // namespace

uint64_t registry_generation() { return generation; }
void bump_registry_generation() { ++generation; }

}  // namespace bilevel
