"""Analysis: the encoder service (the pipeline's one seam to the model), zero-shot tags and
scene scores, text-query alerts and captions."""
