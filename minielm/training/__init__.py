"""The DeepSpeed training core: :mod:`~minielm.training.config` (TrainingConfig) and
:mod:`~minielm.training.engine` (``train`` loop and ``DeepSpeedTrainer``). Importing this package
does not import DeepSpeed."""
