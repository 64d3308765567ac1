"""Training utilities for Monkey-Net: the original losses and one training iteration."""
