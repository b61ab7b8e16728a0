"""facetrack.train: ``facetrack train`` -- YAML recipes (config), crops and targets (dataset), the
LightningModule (module), pickle-free checkpoints and run records (checkpoint), and the run itself (run).

Nothing is imported here, so ``import facetrack`` stays free of Lightning.
"""
