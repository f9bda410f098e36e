"""Pieces of the training script `train_eisv.py`: arguments, schedules, checkpoints, distributed evaluation."""
