"""The training loop, checkpoints and distributed runs. Imports core, nets, data and base."""
