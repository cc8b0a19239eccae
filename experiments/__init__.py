"""wsim experiments: load drivers, fault injectors, the experiment runner, analysis helpers and benchmarks."""
