"""Layer 0: argument and tensor checks, seeded generators, atomic writes. Imports nothing of the package."""
