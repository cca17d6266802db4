"""diffusion_study: the small PyTorch library behind the executable book on diffusion models.

Layers (tests/test_layers.py holds them): base -> core -> nets, data -> training -> studies; eval and book
beside them (book never imports core). Importing the package pins the CPU's floating-point code paths
(`base.numerics`): the book's numbers are the same on every x86-64 machine with AVX2.
"""

from diffusion_study.base.numerics import pin_numerics

pin_numerics()

__version__ = "0.1.0"
