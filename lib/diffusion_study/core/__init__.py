"""The mathematics: schedules, forward processes, predictions, bounds, samplers, ODE, guidance. Imports core and base only."""
