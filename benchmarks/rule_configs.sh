# Sourced by the benchmark scripts: the Fashion-MNIST MLP config of each rule they compare.
#   config_of RULE   prints configs/fmnist_mlp_*.yaml for backprop, ep and dual_prop; returns 1 for another rule
config_of() {
  case "$1" in
    backprop) echo configs/fmnist_mlp_bp.yaml ;;
    ep) echo configs/fmnist_mlp_ep.yaml ;;
    dual_prop) echo configs/fmnist_mlp_dp.yaml ;;
    *) return 1 ;;
  esac
}
