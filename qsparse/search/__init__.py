"""Search over compression configs: layer-wise sensitivity, mixed-precision search (Optuna), and the memory and
throughput models they score configurations with."""
from .cost import bits_per_weight, layer_costs, throughput

__all__ = ["bits_per_weight", "layer_costs", "throughput"]
