"""The pipeline's parts that know nothing of video libraries or models: frames and their
annotations, bounded channels, observers, the sampler and the batcher, statistics, progress,
background threads, retry/backoff and the small helpers every room shares."""
