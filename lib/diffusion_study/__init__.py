"""diffusion_study: the small PyTorch library behind the executable book on diffusion models."""

__version__ = "0.1.0"
