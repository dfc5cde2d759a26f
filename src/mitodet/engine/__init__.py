"""Training engine: the train loop, checkpoints, validation."""
