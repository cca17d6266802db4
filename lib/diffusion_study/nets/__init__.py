"""Networks: MLPs, U-Nets, ensembles, classifiers, learned transforms F_phi. Imports core and base."""
