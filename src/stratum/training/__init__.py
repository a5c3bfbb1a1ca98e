"""Training and compression jobs: everything that turns a model version into a new one."""
