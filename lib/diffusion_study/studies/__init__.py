"""One module per chapter (configurations, measurements, claim verdicts) and the command line. May import everything."""
