"""Analysis: the encoder, zero-shot tags and scene scores, text-query alerts and captions."""
