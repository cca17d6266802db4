import diffusion_study  # noqa: F401  (first: it pins the CPU code paths before torch's first operation)
import torch

# Unit tests work on small tensors: one thread is as fast and is immune to the oversubscription
# stalls that OpenMP suffers when another process (a notebook kernel, a build) shares the 2 cores.
torch.set_num_threads(1)

from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run: CI cannot fail on an unlucky draw.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")
