"""Running, host side: planning a suite, running one job as named steps, A/B sessions, sweeps, Ctrl-C."""
