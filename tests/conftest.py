import torch

# Unit tests work on small tensors: one thread is as fast and is immune to the oversubscription
# stalls that OpenMP suffers when another process (a notebook kernel, a build) shares the 2 cores.
torch.set_num_threads(1)
