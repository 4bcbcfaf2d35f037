"""idlab's Hydra launcher plugin (hydra/launcher=fork); see fork_launcher.py."""
