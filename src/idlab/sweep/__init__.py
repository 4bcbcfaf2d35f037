"""d-sweeps through Hydra launchers: plan, launch, resume, d_int90 analysis and report."""
