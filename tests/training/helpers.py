from training.config import TrainConfig

TINY = dict(data="digits", width=8, batch_size=8, log_every=1, sample_every=1000, checkpoint_every=1000,
            keep_checkpoints=5)


def tiny_config(**overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, **overrides})
