"""Studies: grids of pruning runs that share work (trees), resume after a crash and scale out on Ray."""
