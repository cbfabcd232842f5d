"""Machine learning: data, training, distillation, pruning, calibration, model files."""
