"""Data: 2D toys with exact densities, image datasets. Imports core and base."""
