"""Training, evaluation and prediction engines: config, loop, checkpoints, manifests."""
